/**
 * db-hooks runtime: what a driver (runtime-postgres, runtime-sqlite) does, and the shapes of
 * statements and their results.
 */
import type { ConnectionSource } from './runtime-pool.js';
import type { Waiter } from './runtime-wait.js';

/** Statement parameters, in the driver's own placeholder style (`?` for SQLite, `$1` for PostgreSQL). */
export type Params = readonly unknown[] | Record<string, unknown>;

export interface RunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
  /** SQLite's rowid of the last inserted row. PostgreSQL: use `RETURNING id` with get() instead. */
  lastInsertId?: number | bigint;
}

/** How raw() returns its rows, for ORMs that map rows themselves. */
export interface RawOptions {
  /** 'array': each row as an array of values in column order (no name clashes in joins). */
  rowMode?: 'object' | 'array';
  /**
   * The driver's type parsing for this statement: pg's QueryConfig `types`, mysql2's `typeCast`.
   * SQLite ignores it.
   */
  types?: unknown;
  /**
   * PostgreSQL and SQLite: also the result's columns (RawResult.columns), for ORMs that convert
   * values by type (Prisma). MySQL returns none yet.
   */
  columns?: boolean;
}

/** A result column, as raw() returns it with `columns: true`. */
export interface RawColumn {
  name: string;
  /**
   * PostgreSQL: the type's OID (pg's `dataTypeID`). SQLite: the declared type of the table column
   * it reads (`INTEGER`, `DATETIME`), null for an expression.
   */
  type: number | string | null;
}

/** What raw() returns: the rows, and what the statement changed. */
export interface RawResult<Row = unknown> {
  rows: Row[];
  /** Rows inserted, updated or deleted; undefined for a SQLite statement that returns rows. */
  changes?: number;
  /** SQLite's rowid of the last inserted row. */
  lastInsertId?: number | bigint;
  /** With `columns: true`: the result's columns, in order; empty for a statement with no rows. */
  columns?: RawColumn[];
}

/** What a statement gives, by how it was run: query(), get(), run() or raw(). */
export interface StatementResults<Row = unknown> {
  all: Row[];
  get: Row | undefined;
  run: RunResult;
  raw: RawResult<Row>;
}
export type StatementMode = keyof StatementResults;

/** db.stream()'s statement, open on its connection: its rows as the loop asks for them. */
export interface RowCursor<Row = unknown> {
  /** The next rows, as many as the stream's batch size at most; none once all were read. */
  read(): Row[] | Promise<Row[]>;
  /** Ends the statement, early or after its last row; the connection is free again. */
  close(): void | Promise<void>;
}

/** SQL's isolation levels, as PostgreSQL and MySQL spell them (lower case, as Kysely does). */
export type IsolationLevel =
  | 'read uncommitted'
  | 'read committed'
  | 'repeatable read'
  | 'serializable';

/** How a transaction begins: db.atomic()'s options for the outermost block. */
export interface TransactionOptions {
  /** Default: the server's (PostgreSQL: read committed). SQLite is always serializable. */
  isolationLevel?: IsolationLevel;
  /** PostgreSQL: READ ONLY (true) or READ WRITE (false). */
  readOnly?: boolean;
  /** PostgreSQL: DEFERRABLE; with serializable and readOnly it waits for a safe snapshot. */
  deferrable?: boolean;
}

/** What a driver does besides keeping connections (ConnectionSource). */
export interface Driver<Conn> extends ConnectionSource<Conn> {
  execute<M extends StatementMode>(
    conn: Conn,
    mode: M,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): StatementResults[M] | Promise<StatementResults[M]>;
  /** Opens a statement for db.stream() (runtime-stream), reading `batchSize` rows at a time. */
  stream(
    conn: Conn,
    sql: string,
    params: Params | undefined,
    batchSize: number,
  ): RowCursor | Promise<RowCursor>;
  /**
   * BEGIN, with `options` when db.atomic() got some. `turn` is what transactionTurn() gave, if
   * the driver has one: begin() owns it.
   */
  begin(conn: Conn, turn?: () => void, options?: TransactionOptions): void | Promise<void>;
  commit(conn: Conn): void | Promise<void>;
  rollback(conn: Conn): void | Promise<void>;
  /**
   * What a transaction waits for before it takes a connection (SQLite: its turn to write), so
   * that a request queued behind another's transaction holds no connection meanwhile. Resolves
   * with the function that gives the turn up; the waiter may end the wait early.
   */
  transactionTurn?(waiter: Waiter): Promise<() => void>;
  /** Throws for options the database does not have, before anything waits or checks out. */
  checkTransactionOptions?(options: TransactionOptions): void;
  /**
   * True when a transaction failed in a way that running it again may not (PostgreSQL: a
   * serialization failure or deadlock): db.atomic()'s `retries` run the block again then.
   */
  isRetryable?(error: unknown): boolean;
}
