/**
 * db-hooks driver for SQLite, on better-sqlite3.
 *
 * better-sqlite3 is synchronous. If request A held a write transaction across an `await` and
 * request B then wrote on another connection, B would sit in SQLite's busy handler, blocking the
 * whole event loop, and A could never resume to commit. So writers take turns through an async
 * write lock instead: a write transaction (BEGIN IMMEDIATE) holds it from BEGIN to COMMIT, a
 * single write statement holds it while it runs, and other requests wait for it without blocking
 * the event loop. WAL mode lets reads run on their own connections meanwhile.
 */
import BetterSqlite3 from 'better-sqlite3';
import { Database, type DatabaseOptions } from './runtime-database.js';
import type {
  Driver,
  Params,
  RawOptions,
  StatementMode,
  StatementResults,
} from './runtime-driver.js';
import { DatabaseUnavailableError, PoolTimeoutError } from './runtime-errors.js';
import { type Logger, WaitQueue } from './runtime-pool.js';

export type Pragmas = Record<string, string | number>;

/** better-sqlite3's options (timeout, readonly, fileMustExist, ...), passed as they are, and ours. */
export interface SqliteOptions extends DatabaseOptions, BetterSqlite3.Options {
  /** Database file. Default 'app.db'. ':memory:' gets a single connection. */
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
    super(new SqliteDriver(path, options), {
      ...options,
      max: path === ':memory:' ? 1 : options.max,
    });
  }
}

export interface SqliteConnection {
  handle: BetterSqlite3.Database;
  /** Prepared statements by SQL text: preparing costs more than running a simple query. */
  statements: Map<string, BetterSqlite3.Statement>;
  /** Gives up the write lock this connection's transaction holds. */
  unlock: (() => void) | undefined;
}

const STATEMENT_CACHE_SIZE = 200;

/** A pragma as SQL; names and values are checked, as PRAGMA takes no parameters. */
function pragmaStatement(name: string, value: string | number): string {
  if (!/^\w+$/.test(name) || !/^[\w.-]+$/.test(String(value))) {
    throw new TypeError(
      `Invalid SQLite pragma ${JSON.stringify(name)}: ${JSON.stringify(value)}. Use a pragma ` +
        "name and a plain value, e.g. { cache_size: -20000, foreign_keys: 'on' }.",
    );
  }
  return `${name} = ${value}`;
}

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
  readonly #writeTimeoutMillis: number;
  readonly #logger: Logger;
  readonly #all = new Set<SqliteConnection>();
  readonly #idle: SqliteConnection[] = [];
  #writeLocked = false;
  readonly #waitingToWrite = new WaitQueue();

  constructor(path: string, options: SqliteOptions) {
    this.#path = path;
    this.#options = options;
    // A read-only connection cannot switch the file to WAL: it takes the file as it is.
    const defaults: Pragmas = options.readonly
      ? {}
      : { journal_mode: 'wal', synchronous: 'normal' };
    const pragmas = { ...defaults, ...options.pragmas };
    this.#pragmas = Object.entries(pragmas).map(([name, value]) => pragmaStatement(name, value));
    this.#writeTimeoutMillis = options.writeTimeoutMillis ?? 5000;
    this.#logger = options.logger ?? console;
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

  closeAll(): void {
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
    // better-sqlite3 takes positional values as arguments, named ones as one object.
    const args = params === undefined ? [] : Array.isArray(params) ? params : [params];
    const run = () => runStatement(statement, mode, args, options) as StatementResults[M];
    // Reads never wait. Inside a transaction this connection already holds the write lock.
    // A write while nobody holds the lock runs now: nothing else can run until it returns.
    if (statement.readonly || conn.handle.inTransaction || !this.#writeLocked) return run();
    return this.#whenUnlocked(run);
  }

  transactionTurn(signal: AbortSignal): Promise<() => void> {
    return this.#lockForWriting(signal);
  }

  async begin(conn: SqliteConnection, turn?: () => void): Promise<void> {
    conn.unlock = turn ?? (await this.#lockForWriting());
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

  async #whenUnlocked<T>(write: () => T): Promise<T> {
    const unlock = await this.#lockForWriting();
    try {
      return write();
    } finally {
      unlock();
    }
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

  /** Waits for the write lock; resolves with the function that gives it up (once). */
  async #lockForWriting(signal?: AbortSignal): Promise<() => void> {
    if (this.#writeLocked) {
      const timeout = this.#writeTimeoutMillis;
      // Handed over by the holder's unlock, still locked.
      const timedOut = () => {
        this.#logger.error(
          `db-hooks: waited ${timeout} ms for another request's SQLite write transaction to ` +
            'finish. Keep db.atomic() blocks short (no slow awaits inside), or raise ' +
            'writeTimeoutMillis in index.',
        );
        return new PoolTimeoutError(timeout);
      };
      await this.#waitingToWrite.wait(timeout, timedOut, signal);
    }
    this.#writeLocked = true;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (!this.#waitingToWrite.handOff()) this.#writeLocked = false;
    };
  }

  #prepare(conn: SqliteConnection, sql: string): BetterSqlite3.Statement {
    let statement = conn.statements.get(sql);
    if (statement === undefined) {
      statement = conn.handle.prepare(sql);
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
    const conn: SqliteConnection = { handle, statements: new Map(), unlock: undefined };
    this.#all.add(conn);
    return conn;
  }
}
