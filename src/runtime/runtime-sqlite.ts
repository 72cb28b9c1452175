/**
 * db-hooks runtime for SQLite, on better-sqlite3, with a small pool of connections.
 *
 * better-sqlite3 is synchronous. If request A held a write transaction across an `await` and
 * request B then wrote on another connection, B would sit in SQLite's busy handler, blocking the
 * whole event loop, and A could never resume to commit. So writers take turns through an async
 * write lock instead: a write transaction (BEGIN IMMEDIATE) holds it from BEGIN to COMMIT, a
 * single write statement holds it while it runs, and other requests wait for it without blocking
 * the event loop. WAL mode lets reads run on their own connections meanwhile.
 */
import BetterSqlite3 from 'better-sqlite3';
import type { Params, PoolStats, StatementCallback, StatementMode } from './runtime.js';
import { Database, DONE, PoolClosedError, PoolTimeoutError } from './runtime.js';

export interface SqliteOptions {
  /** Database file. Default 'app.db'. ':memory:' gets a single connection. */
  path?: string;
  /** Most connections open at once. Default 10. */
  max?: number;
  /** How long a request waits for a free connection or its turn to write. Default 5000. */
  acquireTimeoutMillis?: number;
  /**
   * How long SQLite waits for a lock held by another process (this process never waits on it).
   * That wait blocks the event loop, so keep it short. Default 5000.
   */
  busyTimeoutMillis?: number;
  /** closePool() waits this long for connections in use, then closes them anyway. Default 5000. */
  closeTimeoutMillis?: number;
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
  holdsWriteLock: boolean;
}

const STATEMENT_CACHE_SIZE = 200;

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** First-come, first-served waiters with a deadline: for free connections and the write lock. */
class WaitQueue<T> {
  private readonly waiters: Waiter<T>[] = [];

  get length(): number {
    return this.waiters.length;
  }

  wait(timeoutMillis: number, timeoutError: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(timeoutError());
        }, timeoutMillis),
      };
      this.waiters.push(waiter);
    });
  }

  /** Gives value to the longest waiter; false if nobody waits. */
  handOff(value: T): boolean {
    const waiter = this.waiters.shift();
    if (waiter === undefined) return false;
    clearTimeout(waiter.timer);
    waiter.resolve(value);
    return true;
  }

  rejectAll(error: Error): void {
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
  }
}

function runStatement(statement: BetterSqlite3.Statement, mode: StatementMode, params?: Params) {
  // better-sqlite3 takes positional values as arguments, named ones as one object.
  const args = params === undefined ? [] : Array.isArray(params) ? params : [params];
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

export class SqliteDatabase extends Database<SqliteConnection> {
  private readonly path: string;
  private readonly max: number;
  private readonly acquireTimeoutMillis: number;
  private readonly busyTimeoutMillis: number;
  private readonly synchronous: 'NORMAL' | 'FULL';
  private readonly closeTimeoutMillis: number;
  private readonly all = new Set<SqliteConnection>();
  private readonly idle: SqliteConnection[] = [];
  private readonly waitingForConnection = new WaitQueue<SqliteConnection>();
  private writeLocked = false;
  private readonly waitingToWrite = new WaitQueue<void>();
  private closing: Promise<void> | undefined;

  constructor(options: SqliteOptions = {}) {
    super();
    this.path = options.path ?? 'app.db';
    // Every ':memory:' connection is a separate empty database, so share one.
    this.max = this.path === ':memory:' ? 1 : (options.max ?? 10);
    this.acquireTimeoutMillis = options.acquireTimeoutMillis ?? 5000;
    this.busyTimeoutMillis = options.busyTimeoutMillis ?? 5000;
    this.synchronous = options.synchronous === 'full' ? 'FULL' : 'NORMAL';
    this.closeTimeoutMillis = options.closeTimeoutMillis ?? 5000;
  }

  stats(): PoolStats {
    const total = this.all.size;
    const idle = this.idle.length;
    return { total, idle, inUse: total - idle, waiting: this.waitingForConnection.length };
  }

  closePool(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  // acquire and releaseConnection are not async: an async function costs a promise or two per
  // call, which is much of the runtime's overhead on a query that takes microseconds.
  protected acquireNow(): SqliteConnection | undefined {
    if (this.closing !== undefined) return undefined;
    return this.idle.pop();
  }

  protected acquire(): Promise<SqliteConnection> {
    if (this.closing !== undefined) return Promise.reject(new PoolClosedError());
    const idle = this.idle.pop();
    if (idle !== undefined) return Promise.resolve(idle);
    try {
      if (this.all.size < this.max) return Promise.resolve(this.openConnection());
    } catch (error) {
      return Promise.reject(error);
    }
    return this.waitingForConnection.wait(
      this.acquireTimeoutMillis,
      () =>
        new PoolTimeoutError(
          `No SQLite connection became free within ${this.acquireTimeoutMillis} ms: all ` +
            `${this.max} connections of the pool are in use. Make sure every request releases ` +
            'its connection, raise max, or raise acquireTimeoutMillis.',
        ),
    );
  }

  protected releaseConnection(conn: SqliteConnection): Promise<void> {
    if (!this.all.has(conn)) return DONE; // closed by closePool() after its timeout
    try {
      if (conn.handle.inTransaction) this.rollbackNow(conn);
    } catch {
      // ROLLBACK failed: the connection is unusable, so drop it.
      this.all.delete(conn);
      conn.handle.close();
      return DONE;
    }
    if (!this.waitingForConnection.handOff(conn)) this.idle.push(conn);
    return DONE;
  }

  protected execute(
    conn: SqliteConnection,
    mode: StatementMode,
    sql: string,
    params: Params | undefined,
    callback: StatementCallback,
  ): void {
    let result: unknown;
    try {
      const statement = this.prepare(conn, sql);
      // Reads never wait. Inside a transaction this connection already holds the write lock.
      // A write while nobody holds the lock runs now: nothing else can run until it returns.
      if (!statement.readonly && !conn.handle.inTransaction && this.writeLocked) {
        this.writeWhenUnlocked(statement, mode, params, callback);
        return;
      }
      result = runStatement(statement, mode, params);
    } catch (error) {
      callback(error);
      return;
    }
    callback(null, result);
  }

  private writeWhenUnlocked(
    statement: BetterSqlite3.Statement,
    mode: StatementMode,
    params: Params | undefined,
    callback: StatementCallback,
  ): void {
    this.lockForWriting().then(() => {
      let result: unknown;
      try {
        result = runStatement(statement, mode, params);
      } catch (error) {
        this.unlockForWriting();
        callback(error);
        return;
      }
      this.unlockForWriting();
      callback(null, result);
    }, callback);
  }

  protected async begin(conn: SqliteConnection): Promise<void> {
    await this.lockForWriting();
    conn.holdsWriteLock = true;
    try {
      // IMMEDIATE takes SQLite's write lock now, not at the first write, so it cannot fail later.
      conn.handle.exec('BEGIN IMMEDIATE');
    } catch (error) {
      conn.holdsWriteLock = false;
      this.unlockForWriting();
      throw error;
    }
  }

  protected async commit(conn: SqliteConnection): Promise<void> {
    try {
      conn.handle.exec('COMMIT');
    } catch (error) {
      // A failed COMMIT leaves the transaction open in SQLite: end it, all or nothing.
      this.rollbackNow(conn);
      throw error;
    }
    this.releaseWriteLock(conn);
  }

  protected async rollback(conn: SqliteConnection): Promise<void> {
    this.rollbackNow(conn);
  }

  private rollbackNow(conn: SqliteConnection): void {
    try {
      if (conn.handle.inTransaction) conn.handle.exec('ROLLBACK');
    } finally {
      this.releaseWriteLock(conn);
    }
  }

  private releaseWriteLock(conn: SqliteConnection): void {
    if (!conn.holdsWriteLock) return;
    conn.holdsWriteLock = false;
    this.unlockForWriting();
  }

  private lockForWriting(): Promise<void> {
    if (!this.writeLocked) {
      this.writeLocked = true;
      return DONE;
    }
    return this.waitingToWrite.wait(
      this.acquireTimeoutMillis,
      () =>
        new PoolTimeoutError(
          `Waited ${this.acquireTimeoutMillis} ms for another request's SQLite write ` +
            'transaction to finish. Keep db.atomic() blocks short (no slow awaits inside), or ' +
            'raise acquireTimeoutMillis.',
        ),
    );
  }

  private unlockForWriting(): void {
    if (!this.waitingToWrite.handOff()) this.writeLocked = false;
  }

  private prepare(conn: SqliteConnection, sql: string): BetterSqlite3.Statement {
    let statement = conn.statements.get(sql);
    if (statement === undefined) {
      statement = conn.handle.prepare(sql);
      if (conn.statements.size >= STATEMENT_CACHE_SIZE) {
        conn.statements.delete(conn.statements.keys().next().value!);
      }
      conn.statements.set(sql, statement);
    }
    return statement;
  }

  private openConnection(): SqliteConnection {
    const handle = new BetterSqlite3(this.path, { timeout: this.busyTimeoutMillis });
    // WAL: readers do not block the writer and the writer does not block readers.
    handle.pragma('journal_mode = WAL');
    handle.pragma(`synchronous = ${this.synchronous}`);
    const conn: SqliteConnection = { handle, statements: new Map(), holdsWriteLock: false };
    this.all.add(conn);
    return conn;
  }

  private async shutDown(): Promise<void> {
    this.waitingForConnection.rejectAll(new PoolClosedError());
    const deadline = Date.now() + this.closeTimeoutMillis;
    while (this.idle.length < this.all.size && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // Past the timeout, connections still in use are closed too (SQLite rolls them back).
    for (const conn of this.all) {
      this.releaseWriteLock(conn);
      conn.handle.close();
    }
    this.all.clear();
    this.idle.length = 0;
  }
}
