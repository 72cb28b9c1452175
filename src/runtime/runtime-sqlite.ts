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
import {
  Database,
  type LeaveQueue,
  type Params,
  type PoolOptions,
  PoolTimeoutError,
  type RawOptions,
  type StatementMode,
  WaitQueue,
} from './runtime.js';

export interface SqliteOptions extends PoolOptions {
  /** Database file. Default 'app.db'. ':memory:' gets a single connection. */
  path?: string;
  /**
   * How long SQLite waits for a lock held by another process (this process never waits on it).
   * That wait blocks the event loop, so keep it short. Default 5000.
   */
  busyTimeoutMillis?: number;
  /**
   * SQLite's `synchronous` setting. Default 'normal': with WAL a commit survives the process
   * crashing, and only a power loss can undo the last few. 'full' also syncs the disk on every
   * commit, which better-sqlite3 does synchronously: each write then blocks the event loop for
   * the disk's flush time.
   */
  synchronous?: 'normal' | 'full';
}

export interface SqliteConnection {
  handle: BetterSqlite3.Database;
  /** Prepared statements by SQL text: preparing costs more than running a simple query. */
  statements: Map<string, BetterSqlite3.Statement>;
  /** Gives up the write lock this connection's transaction holds. */
  unlock: (() => void) | undefined;
}

const STATEMENT_CACHE_SIZE = 200;

function runStatement(
  statement: BetterSqlite3.Statement,
  mode: StatementMode,
  params?: Params,
  options?: RawOptions,
) {
  // better-sqlite3 takes positional values as arguments, named ones as one object.
  const args: unknown[] = params === undefined ? [] : Array.isArray(params) ? params : [params];
  if (mode === 'raw') return runRaw(statement, args, options);
  if (mode === 'run') {
    const result = statement.run(...args);
    return { changes: result.changes, lastInsertId: result.lastInsertRowid };
  }
  if (!statement.reader) {
    statement.run(...args);
    return mode === 'all' ? [] : undefined;
  }
  return mode === 'all' ? statement.all(...args) : statement.get(...args);
}

function runRaw(statement: BetterSqlite3.Statement, args: unknown[], options?: RawOptions) {
  if (!statement.reader) {
    const result = statement.run(...args);
    return { rows: [], changes: result.changes, lastInsertId: result.lastInsertRowid };
  }
  if (options?.rowMode !== 'array') return { rows: statement.all(...args) };
  // The statement is cached and shared with db.query(): arrays for this call only.
  try {
    return { rows: statement.raw(true).all(...args) };
  } finally {
    statement.raw(false);
  }
}

export class SqliteDatabase extends Database<SqliteConnection> {
  readonly #path: string;
  readonly #busyTimeoutMillis: number;
  readonly #synchronous: 'NORMAL' | 'FULL';
  readonly #lockTimeoutMillis: number;
  readonly #all = new Set<SqliteConnection>();
  readonly #idle: SqliteConnection[] = [];
  #writeLocked = false;
  readonly #waitingToWrite = new WaitQueue();

  constructor(options: SqliteOptions = {}) {
    const path = options.path ?? 'app.db';
    // Every ':memory:' connection is a separate empty database, so share one.
    super({ ...options, max: path === ':memory:' ? 1 : options.max });
    this.#path = path;
    this.#busyTimeoutMillis = options.busyTimeoutMillis ?? 5000;
    this.#synchronous = options.synchronous === 'full' ? 'FULL' : 'NORMAL';
    this.#lockTimeoutMillis = options.acquireTimeoutMillis ?? 5000;
  }

  protected acquireConnection(): SqliteConnection {
    return this.#idle.pop() ?? this.#open();
  }

  protected releaseConnection(conn: SqliteConnection, discard: boolean): void {
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

  protected isBroken(conn: SqliteConnection): boolean {
    return !conn.handle.open;
  }

  protected execute(
    conn: SqliteConnection,
    mode: StatementMode,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): unknown {
    const statement = this.#prepare(conn, sql);
    // Reads never wait. Inside a transaction this connection already holds the write lock.
    // A write while nobody holds the lock runs now: nothing else can run until it returns.
    if (statement.readonly || conn.handle.inTransaction || !this.#writeLocked) {
      return runStatement(statement, mode, params, options);
    }
    return this.#whenUnlocked(() => runStatement(statement, mode, params, options));
  }

  async #whenUnlocked<T>(write: () => T): Promise<T> {
    const unlock = await this.#lockForWriting();
    try {
      return write();
    } finally {
      unlock();
    }
  }

  protected transactionTurn(leaveOnRelease: Set<LeaveQueue>): Promise<() => void> {
    return this.#lockForWriting(leaveOnRelease);
  }

  protected async begin(conn: SqliteConnection, turn?: () => void): Promise<void> {
    conn.unlock = turn ?? (await this.#lockForWriting());
    try {
      // IMMEDIATE takes SQLite's write lock now, not at the first write, so it cannot fail later.
      conn.handle.exec('BEGIN IMMEDIATE');
    } catch (error) {
      this.#releaseWriteLock(conn);
      throw error;
    }
  }

  protected commit(conn: SqliteConnection): void {
    try {
      conn.handle.exec('COMMIT');
    } catch (error) {
      // A failed COMMIT leaves the transaction open in SQLite: end it, all or nothing.
      this.#rollbackNow(conn);
      throw error;
    }
    this.#releaseWriteLock(conn);
  }

  protected rollback(conn: SqliteConnection): void {
    this.#rollbackNow(conn);
  }

  protected poolSize(): { total: number; idle: number } {
    return { total: this.#all.size, idle: this.#idle.length };
  }

  protected closeConnections(): void {
    for (const conn of this.#all) {
      this.#releaseWriteLock(conn);
      conn.handle.close(); // SQLite rolls back a transaction left open
    }
    this.#all.clear();
    this.#idle.length = 0;
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
  async #lockForWriting(leaveOnRelease?: Set<LeaveQueue>): Promise<() => void> {
    if (this.#writeLocked) {
      const timeout = this.#lockTimeoutMillis;
      // Handed over by the holder's unlock, still locked.
      const timedOut = () => {
        this.logger.error(
          `db-hooks: waited ${timeout} ms for another request's SQLite write transaction to ` +
            'finish. Keep db.atomic() blocks short (no slow awaits inside).',
        );
        return new PoolTimeoutError(timeout);
      };
      await this.#waitingToWrite.wait(timeout, timedOut, leaveOnRelease);
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
      if (conn.statements.size >= STATEMENT_CACHE_SIZE) {
        // Maps keep insertion order: drop the oldest.
        for (const oldest of conn.statements.keys()) {
          conn.statements.delete(oldest);
          break;
        }
      }
      conn.statements.set(sql, statement);
    }
    return statement;
  }

  #open(): SqliteConnection {
    const handle = new BetterSqlite3(this.#path, { timeout: this.#busyTimeoutMillis });
    // WAL: readers do not block the writer and the writer does not block readers.
    handle.pragma('journal_mode = WAL');
    handle.pragma(`synchronous = ${this.#synchronous}`);
    const conn: SqliteConnection = { handle, statements: new Map(), unlock: undefined };
    this.#all.add(conn);
    return conn;
  }
}
