/**
 * db-hooks runtime: the SQLite driver, whichever library runs the statements. runtime-sqlite
 * (better-sqlite3) and runtime-node-sqlite (Node's built-in node:sqlite) each give it an engine.
 *
 * Both libraries are synchronous. If request A held a write transaction across an `await` and
 * request B then wrote on another connection, B would sit in SQLite's busy handler, blocking the
 * whole event loop, and A could never resume to commit. So writers take turns through an async
 * write lock instead: a write transaction (BEGIN IMMEDIATE) holds it from BEGIN to COMMIT, a
 * single write statement holds it while it runs, and other requests wait for it without blocking
 * the event loop. WAL mode lets reads run on their own connections meanwhile.
 *
 * A connection whose state a statement changed (a pragma, ATTACH, a temporary table: see
 * runtime-session) is closed when it goes back, and the next checkout opens a new one with the
 * configured pragmas and onConnect: that is exactly a new connection, for about 0.1 ms.
 */
import type { DatabaseOptions } from './runtime-database.js';
import type {
  Driver,
  Params,
  RawColumn,
  RawOptions,
  RowCursor,
  StatementMode,
  StatementResults,
  TransactionOptions,
} from './runtime-driver.js';
import { DatabaseUnavailableError, PoolClosedError, PoolTimeoutError } from './runtime-errors.js';
import { defaultLogger, type Logger } from './runtime-pool.js';
import { newConnectionPragmas, type Pragmas, sqliteChangesSession } from './runtime-session.js';
import { iteratorCursor, type SyncRowCursor } from './runtime-stream.js';
import { TurnLock, type Waiter } from './runtime-wait.js';

/** What both SQLite drivers take, besides their library's own options. */
export interface SqliteCommonOptions<Handle> extends DatabaseOptions {
  /** Database file. Default 'app.db'. ':memory:' is one connection, never replaced or reset. */
  path?: string;
  /** Set on every new connection, over the defaults: `{ journal_mode: 'wal', synchronous: 'normal' }`. */
  pragmas?: Pragmas;
  /** Awaited before a new connection is first used; when it throws, the connection is closed. */
  onConnect?: (connection: Handle) => void | Promise<void>;
  /** How long a write waits for another request's write transaction to end. Default 5000. */
  writeTimeoutMillis?: number;
}

/** A statement, and what the driver knows of it: found once, when it is prepared. */
export interface Prepared<Statement> {
  statement: Statement;
  /** It writes no database file (SQLite's sqlite3_stmt_readonly): it never waits to write. */
  readonly: boolean;
  reader: boolean; // it returns rows
}

/** How one SQLite library does what the driver needs. */
export interface SqliteEngine<Handle, Statement> {
  /** A new connection, with the library's own options. */
  open(): Handle;
  close(handle: Handle): void;
  isOpen(handle: Handle): boolean;
  inTransaction(handle: Handle): boolean;
  /** An in-memory database: a new connection would be another, empty one. */
  isMemory(handle: Handle): boolean;
  exec(handle: Handle, sql: string): void;
  prepare(handle: Handle, sql: string): Prepared<Statement>;
  run(statement: Statement, args: unknown[]): { changes: number; lastInsertRowid: number | bigint };
  get(statement: Statement, args: unknown[]): unknown;
  all(statement: Statement, args: unknown[]): unknown[];
  /** Rows as arrays of values, for this call only: the statement is cached and shared. */
  allArrays(statement: Statement, args: unknown[]): unknown[];
  /** The columns a statement that returns rows gives, with their declared types. */
  columns(statement: Statement): RawColumn[];
  /** Rows one at a time (db.stream()); return() ends the statement. */
  iterate(statement: Statement, args: unknown[]): Iterator<unknown>;
}

export interface SqliteConnection<Handle = unknown, Statement = unknown> {
  handle: Handle;
  /** Prepared statements by SQL text: preparing costs more than running a simple query. */
  statements: Map<string, CachedStatement<Statement>>;
  unlock: (() => void) | undefined; // gives up the write lock its transaction holds
  sessionChanged: boolean; // a statement changed its state: it is closed when it goes back
  cursor: SyncRowCursor | undefined; // db.stream()'s last statement on it, closed before it
}

interface CachedStatement<Statement> extends Prepared<Statement> {
  changesSession: boolean; // runtime-session
}

const STATEMENT_CACHE_SIZE = 200;

/**
 * True for an error that says the database file cannot be used (a missing or read-only
 * directory, a file moved away, a full disk), not that the statement was wrong: SQLite's
 * CANTOPEN, IOERR, FULL, NOTADB and READONLY_* (not plain READONLY, a write to a read-only
 * connection). better-sqlite3 names the code (`SQLITE_READONLY_DBMOVED`), node:sqlite numbers it.
 */
export function isFileFailure(error: unknown): boolean {
  const { code, errcode } = (error ?? {}) as { code?: unknown; errcode?: unknown };
  if (typeof errcode === 'number') {
    return [10, 13, 14, 26].includes(errcode & 0xff) || ((errcode & 0xff) === 8 && errcode !== 8);
  }
  return typeof code === 'string' && /^SQLITE_(CANTOPEN|IOERR|FULL|NOTADB|READONLY_)/.test(code);
}

export class SqliteDriver<Handle, Statement>
  implements Driver<SqliteConnection<Handle, Statement>>
{
  readonly #engine: SqliteEngine<Handle, Statement>;
  readonly #options: SqliteCommonOptions<Handle> & { path: string };
  readonly #pragmas: string[];
  readonly #logger: Logger;
  readonly #all = new Set<SqliteConnection<Handle, Statement>>();
  /** Connections whose file failed under them: closed when they go back, not reused. */
  readonly #broken = new WeakSet<SqliteConnection<Handle, Statement>>();
  readonly #idle: SqliteConnection<Handle, Statement>[] = [];
  /** Whose turn it is to write: one write transaction or write statement at a time. */
  readonly #writeTurn: TurnLock;

  constructor(
    engine: SqliteEngine<Handle, Statement>,
    options: SqliteCommonOptions<Handle> & { path: string; readonly?: boolean | undefined },
  ) {
    this.#engine = engine;
    this.#options = options;
    this.#pragmas = newConnectionPragmas(options);
    this.#logger = options.logger ?? defaultLogger;
    const timeout = options.writeTimeoutMillis ?? 5000;
    this.#writeTurn = new TurnLock(timeout, () => {
      this.#logger.error(
        `db-hooks: waited ${timeout} ms for another request's SQLite write transaction to ` +
          'finish. Keep db.atomic() blocks short (no slow awaits inside), or raise ' +
          'writeTimeoutMillis in index.',
      );
      return new PoolTimeoutError(timeout);
    });
  }

  checkOut(): SqliteConnection<Handle, Statement> | Promise<SqliteConnection<Handle, Statement>> {
    return this.#idle.pop() ?? this.#open();
  }

  checkIn(conn: SqliteConnection<Handle, Statement>, discard: boolean): void {
    if (!discard && this.#engine.inTransaction(conn.handle)) {
      try {
        this.rollback(conn); // a BEGIN run by hand and left open
      } catch {
        discard = true;
      }
    }
    this.#releaseWriteLock(conn);
    if (discard) {
      this.#all.delete(conn);
      this.#close(conn);
    } else {
      this.#idle.push(conn);
    }
  }

  /** A statement still being iterated (closePool() past its timeout) keeps better-sqlite3 open. */
  #close(conn: SqliteConnection<Handle, Statement>): void {
    conn.cursor?.close(); // synchronous on SQLite: no promise, no `void` (standard rejects it)
    if (this.#engine.isOpen(conn.handle)) this.#engine.close(conn.handle);
  }

  isBroken(conn: SqliteConnection<Handle, Statement>): boolean {
    return this.#broken.has(conn) || !this.#engine.isOpen(conn.handle);
  }

  changedSession(conn: SqliteConnection<Handle, Statement>): boolean {
    // A ':memory:' connection is the database: a new one would be empty.
    return conn.sessionChanged && !this.#engine.isMemory(conn.handle);
  }

  closeAll(): void {
    // Writers still waiting for their turn when the pool closes are refused, as the pool's are.
    this.#writeTurn.rejectWaiting(new PoolClosedError());
    for (const conn of this.#all) {
      this.#releaseWriteLock(conn);
      this.#close(conn); // rolls back
    }
    this.#all.clear();
    this.#idle.length = 0;
  }

  size(): { total: number; idle: number } {
    return { total: this.#all.size, idle: this.#idle.length };
  }

  execute<M extends StatementMode>(
    conn: SqliteConnection<Handle, Statement>,
    mode: M,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): StatementResults[M] | Promise<StatementResults[M]> {
    const prepared = this.#failing(conn, () => this.#prepare(conn, sql));
    if (prepared.changesSession) conn.sessionChanged = true;
    // Both libraries take positional values as arguments, named ones as one object.
    const args = params === undefined ? [] : Array.isArray(params) ? params : [params];
    const run = () =>
      this.#failing(conn, () => this.#run(prepared, mode, args, options) as StatementResults[M]);
    // Reads never wait. Inside a transaction this connection already holds the write lock.
    // A write while nobody holds the lock runs now: nothing else can run until it returns.
    const now = prepared.readonly || !this.#writeTurn.held;
    return now || this.#engine.inTransaction(conn.handle) ? run() : this.#writeTurn.whenFree(run);
  }

  stream(
    conn: SqliteConnection<Handle, Statement>,
    sql: string,
    params: Params | undefined,
    batchSize: number,
  ): RowCursor {
    const prepared = this.#prepare(conn, sql);
    // A write would hold SQLite's write lock across the loop's awaits, outside the write turns.
    if (!prepared.readonly && !this.#engine.inTransaction(conn.handle)) {
      throw new TypeError('db.stream(): on SQLite, stream a statement that writes in db.atomic().');
    }
    const args = params === undefined ? [] : Array.isArray(params) ? params : [params];
    conn.cursor = iteratorCursor(this.#engine.iterate(prepared.statement, args), batchSize);
    return conn.cursor;
  }

  /**
   * Runs `step`; when the database file fails under it, the client gets a 503 that says
   * nothing of the file (the detail goes to the log), and the connection is not reused.
   */
  #failing<T>(conn: SqliteConnection<Handle, Statement>, step: () => T): T {
    try {
      return step();
    } catch (error) {
      if (!isFileFailure(error)) throw error;
      this.#broken.add(conn);
      this.#logger.error(`db-hooks: the SQLite file ${this.#options.path} failed:`, error);
      throw new DatabaseUnavailableError({ cause: error });
    }
  }

  // Every SQLite transaction is serializable (one writer at a time): any isolationLevel is met.
  checkTransactionOptions({ readOnly, deferrable }: TransactionOptions): void {
    if (readOnly === undefined && deferrable === undefined) return;
    const option = readOnly === undefined ? 'deferrable' : 'readOnly';
    throw new TypeError(`db.atomic(): SQLite has no ${option} transactions; leave the option out.`);
  }

  transactionTurn(waiter: Waiter): Promise<() => void> {
    return this.#writeTurn.take(waiter);
  }

  async begin(conn: SqliteConnection<Handle, Statement>, turn?: () => void): Promise<void> {
    conn.unlock = turn ?? (await this.#writeTurn.take());
    try {
      // IMMEDIATE takes SQLite's write lock now, not at the first write, so it cannot fail later.
      this.#failing(conn, () => this.#engine.exec(conn.handle, 'BEGIN IMMEDIATE'));
    } catch (error) {
      this.#releaseWriteLock(conn);
      throw error;
    }
  }

  commit(conn: SqliteConnection<Handle, Statement>): void {
    try {
      this.#failing(conn, () => this.#engine.exec(conn.handle, 'COMMIT'));
    } catch (error) {
      // A failed COMMIT leaves the transaction open in SQLite: end it, all or nothing.
      this.rollback(conn);
      throw error;
    }
    this.#releaseWriteLock(conn);
  }

  rollback(conn: SqliteConnection<Handle, Statement>): void {
    try {
      if (this.#engine.inTransaction(conn.handle)) this.#engine.exec(conn.handle, 'ROLLBACK');
    } finally {
      this.#releaseWriteLock(conn);
    }
  }

  #run(
    prepared: CachedStatement<Statement>,
    mode: StatementMode,
    args: unknown[],
    options?: RawOptions,
  ): StatementResults[StatementMode] {
    const engine = this.#engine;
    const { statement } = prepared;
    if (mode === 'run' || !prepared.reader) {
      const result = engine.run(statement, args);
      const changes = { changes: result.changes, lastInsertId: result.lastInsertRowid };
      if (mode === 'run') return changes;
      if (mode !== 'raw') return mode === 'all' ? [] : undefined;
      return options?.columns ? { rows: [], ...changes, columns: [] } : { rows: [], ...changes };
    }
    if (mode === 'get') return engine.get(statement, args);
    if (mode === 'all') return engine.all(statement, args);
    const arrays = options?.rowMode === 'array';
    const rows = arrays ? engine.allArrays(statement, args) : engine.all(statement, args);
    return options?.columns ? { rows, columns: engine.columns(statement) } : { rows };
  }

  #releaseWriteLock(conn: SqliteConnection<Handle, Statement>): void {
    conn.unlock?.();
    conn.unlock = undefined;
  }

  #prepare(conn: SqliteConnection<Handle, Statement>, sql: string): CachedStatement<Statement> {
    let cached = conn.statements.get(sql);
    if (cached === undefined) {
      const prepared = this.#engine.prepare(conn.handle, sql);
      cached = { ...prepared, changesSession: sqliteChangesSession(sql) };
      // Maps keep insertion order: the first key is the oldest.
      const oldest = conn.statements.keys().next();
      if (conn.statements.size >= STATEMENT_CACHE_SIZE && !oldest.done) {
        conn.statements.delete(oldest.value);
      }
      conn.statements.set(sql, cached);
    }
    return cached;
  }

  async #open(): Promise<SqliteConnection<Handle, Statement>> {
    let handle: Handle | undefined;
    try {
      handle = this.#engine.open();
      for (const pragma of this.#pragmas) this.#engine.exec(handle, `PRAGMA ${pragma}`);
      await this.#options.onConnect?.(handle);
    } catch (error) {
      if (handle !== undefined && this.#engine.isOpen(handle)) this.#engine.close(handle);
      this.#logger.error(
        `db-hooks: could not open a SQLite connection to ${this.#options.path}:`,
        error,
      );
      throw new DatabaseUnavailableError({ cause: error });
    }
    const conn: SqliteConnection<Handle, Statement> = {
      handle,
      statements: new Map(),
      unlock: undefined,
      sessionChanged: false,
      cursor: undefined,
    };
    this.#all.add(conn);
    return conn;
  }
}
