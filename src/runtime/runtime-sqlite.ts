/**
 * db-hooks driver for SQLite, on better-sqlite3.
 *
 * better-sqlite3 is synchronous. If request A held a write transaction across an `await` and
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
import BetterSqlite3 from 'better-sqlite3';
import { Database, type DatabaseOptions } from './runtime-database.js';
import type {
  Driver,
  Params,
  RawOptions,
  StatementMode,
  StatementResults,
  TransactionOptions,
} from './runtime-driver.js';
import { DatabaseUnavailableError, PoolClosedError, PoolTimeoutError } from './runtime-errors.js';
import type { Logger } from './runtime-pool.js';
import { newConnectionPragmas, type Pragmas, sqliteChangesSession } from './runtime-session.js';
import { TurnLock, type Waiter } from './runtime-wait.js';

export type { Pragmas } from './runtime-session.js';

/** better-sqlite3's options (timeout, readonly, fileMustExist, ...), passed as they are, and ours. */
export interface SqliteOptions extends DatabaseOptions, BetterSqlite3.Options {
  /** Database file. Default 'app.db'. ':memory:' is one connection, never replaced or reset. */
  path?: string;
  /** Set on every new connection, over the defaults: `{ journal_mode: 'wal', synchronous: 'normal' }`. */
  pragmas?: Pragmas;
  /** Awaited before a new connection is first used; when it throws, the connection is closed. */
  onConnect?: (connection: BetterSqlite3.Database) => void | Promise<void>;
  /** How long a write waits for another request's write transaction to end. Default 5000. */
  writeTimeoutMillis?: number;
}

export class SqliteDatabase extends Database<SqliteConnection> {
  constructor(options: SqliteOptions = {}) {
    const path = options.path ?? 'app.db';
    // Every ':memory:' connection is a separate empty database, so share one.
    const max = path === ':memory:' ? 1 : options.max;
    super(new SqliteDriver(path, options), { ...options, max });
  }
}

export interface SqliteConnection {
  handle: BetterSqlite3.Database;
  /** Prepared statements by SQL text: preparing costs more than running a simple query. */
  statements: Map<string, BetterSqlite3.Statement>;
  /** Gives up the write lock this connection's transaction holds. */
  unlock: (() => void) | undefined;
  /** A statement changed its state: it is closed when it goes back. */
  sessionChanged: boolean;
}

const STATEMENT_CACHE_SIZE = 200;

/** Cached statements that change their connection's state, found once when prepared. */
const changesSession = new WeakSet<BetterSqlite3.Statement>();

function runStatement(
  statement: BetterSqlite3.Statement,
  mode: StatementMode,
  args: unknown[],
  options?: RawOptions,
): StatementResults[StatementMode] {
  if (mode === 'run' || !statement.reader) {
    const result = statement.run(...args);
    const changes = { changes: result.changes, lastInsertId: result.lastInsertRowid };
    if (mode === 'run') return changes;
    return mode === 'raw' ? { rows: [], ...changes } : mode === 'all' ? [] : undefined;
  }
  if (mode === 'get') return statement.get(...args);
  if (mode === 'all') return statement.all(...args);
  if (options?.rowMode !== 'array') return { rows: statement.all(...args) };
  // The statement is cached and shared with db.query(): arrays for this call only.
  try {
    return { rows: statement.raw(true).all(...args) };
  } finally {
    statement.raw(false);
  }
}

class SqliteDriver implements Driver<SqliteConnection> {
  readonly #path: string;
  readonly #options: SqliteOptions;
  readonly #pragmas: string[];
  readonly #logger: Logger;
  readonly #all = new Set<SqliteConnection>();
  readonly #idle: SqliteConnection[] = [];
  /** Whose turn it is to write: one write transaction or write statement at a time. */
  readonly #writeTurn: TurnLock;

  constructor(path: string, options: SqliteOptions) {
    this.#path = path;
    this.#options = options;
    this.#pragmas = newConnectionPragmas(options);
    this.#logger = options.logger ?? console;
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

  checkOut(): SqliteConnection | Promise<SqliteConnection> {
    return this.#idle.pop() ?? this.#open();
  }

  checkIn(conn: SqliteConnection, discard: boolean): void {
    if (!discard && conn.handle.inTransaction) {
      try {
        this.#rollbackNow(conn); // a BEGIN run by hand and left open
      } catch {
        discard = true;
      }
    }
    this.#releaseWriteLock(conn);
    if (discard) {
      this.#all.delete(conn);
      if (conn.handle.open) conn.handle.close();
    } else {
      this.#idle.push(conn);
    }
  }

  isBroken(conn: SqliteConnection): boolean {
    return !conn.handle.open;
  }

  changedSession(conn: SqliteConnection): boolean {
    // A ':memory:' connection is the database: a new one would be empty.
    return conn.sessionChanged && !conn.handle.memory;
  }

  closeAll(): void {
    // Writers still waiting for their turn when the pool closes are refused, as the pool's are.
    this.#writeTurn.rejectWaiting(new PoolClosedError());
    for (const conn of this.#all) {
      this.#releaseWriteLock(conn);
      conn.handle.close(); // SQLite rolls back a transaction left open
    }
    this.#all.clear();
    this.#idle.length = 0;
  }

  size(): { total: number; idle: number } {
    return { total: this.#all.size, idle: this.#idle.length };
  }

  execute<M extends StatementMode>(
    conn: SqliteConnection,
    mode: M,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): StatementResults[M] | Promise<StatementResults[M]> {
    const statement = this.#prepare(conn, sql);
    if (changesSession.has(statement)) conn.sessionChanged = true;
    // better-sqlite3 takes positional values as arguments, named ones as one object.
    const args = params === undefined ? [] : Array.isArray(params) ? params : [params];
    const run = () => runStatement(statement, mode, args, options) as StatementResults[M];
    // Reads never wait. Inside a transaction this connection already holds the write lock.
    // A write while nobody holds the lock runs now: nothing else can run until it returns.
    if (statement.readonly || conn.handle.inTransaction || !this.#writeTurn.held) return run();
    return this.#writeTurn.whenFree(run);
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

  async begin(conn: SqliteConnection, turn?: () => void): Promise<void> {
    conn.unlock = turn ?? (await this.#writeTurn.take());
    try {
      // IMMEDIATE takes SQLite's write lock now, not at the first write, so it cannot fail later.
      conn.handle.exec('BEGIN IMMEDIATE');
    } catch (error) {
      this.#releaseWriteLock(conn);
      throw error;
    }
  }

  commit(conn: SqliteConnection): void {
    try {
      conn.handle.exec('COMMIT');
    } catch (error) {
      // A failed COMMIT leaves the transaction open in SQLite: end it, all or nothing.
      this.#rollbackNow(conn);
      throw error;
    }
    this.#releaseWriteLock(conn);
  }

  rollback(conn: SqliteConnection): void {
    this.#rollbackNow(conn);
  }

  #rollbackNow(conn: SqliteConnection): void {
    try {
      if (conn.handle.inTransaction) conn.handle.exec('ROLLBACK');
    } finally {
      this.#releaseWriteLock(conn);
    }
  }

  #releaseWriteLock(conn: SqliteConnection): void {
    conn.unlock?.();
    conn.unlock = undefined;
  }

  #prepare(conn: SqliteConnection, sql: string): BetterSqlite3.Statement {
    let statement = conn.statements.get(sql);
    if (statement === undefined) {
      statement = conn.handle.prepare(sql);
      if (sqliteChangesSession(sql)) changesSession.add(statement);
      // Maps keep insertion order: the first key is the oldest.
      const oldest = conn.statements.keys().next();
      if (conn.statements.size >= STATEMENT_CACHE_SIZE && !oldest.done) {
        conn.statements.delete(oldest.value);
      }
      conn.statements.set(sql, statement);
    }
    return statement;
  }

  async #open(): Promise<SqliteConnection> {
    let handle: BetterSqlite3.Database | undefined;
    try {
      // better-sqlite3 takes its own options from these and ignores the rest.
      handle = new BetterSqlite3(this.#path, this.#options);
      for (const pragma of this.#pragmas) handle.pragma(pragma);
      await this.#options.onConnect?.(handle);
    } catch (error) {
      handle?.close();
      this.#logger.error(`db-hooks: could not open a SQLite connection to ${this.#path}:`, error);
      throw new DatabaseUnavailableError({ cause: error });
    }
    const conn: SqliteConnection = {
      handle,
      statements: new Map(),
      unlock: undefined,
      sessionChanged: false,
    };
    this.#all.add(conn);
    return conn;
  }
}
