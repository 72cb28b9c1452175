/**
 * db-hooks driver for MySQL 8 and MariaDB 10.11+, on mysql2.
 *
 * The runtime decides when connections are checked out and returned, and bounds the wait for
 * one (mysql2's own pool waits forever); this file opens connections with mysql2, keeps the idle
 * ones, and runs statements. A lost server or a KILLed connection fails its statements with
 * DatabaseUnavailableError (503), and the connection is closed instead of reused. A connection a
 * statement changed the session state of (runtime-session) is reset when it goes back:
 * COM_RESET_CONNECTION, then onConnect again.
 */
import mysql from 'mysql2';
import type { Connection as PromiseConnection } from 'mysql2/promise';
import { Database, type DatabaseOptions } from './runtime-database.js';
import type {
  Driver,
  Params,
  RawOptions,
  RawResult,
  RowCursor,
  StatementMode,
  StatementResults,
  TransactionOptions,
} from './runtime-driver.js';
import { DatabaseUnavailableError, TransactionFailedError } from './runtime-errors.js';
import { mysqlCursor } from './runtime-mysql-stream.js';
import { defaultLogger, type Logger } from './runtime-pool.js';
import { mysqlChangesSession } from './runtime-session.js';

export type MysqlConnection = mysql.Connection;

/**
 * mysql2's ConnectionOptions (uri, host, user, password, database, ssl, charset, timezone,
 * connectTimeout, ...), passed to mysql2 as they are, with this project's own options beside them.
 */
export interface MysqlOptions extends DatabaseOptions, mysql.ConnectionOptions {
  /** An idle connection is closed after this long. Default 10000. */
  idleTimeoutMillis?: number;
  /**
   * Runs on each new connection before its first use, and again after a reset: what a new
   * connection starts with (`SET SESSION time_zone = '+00:00'`, ...). A failure closes it.
   */
  onConnect?: (conn: PromiseConnection) => unknown;
}

export class MysqlDatabase extends Database<MysqlConnection> {
  constructor(options: MysqlOptions = {}) {
    super(new MysqlDriver(options), options);
  }
}

// Server errors sent just before it closes the connection: KILL (MariaDB's 1927), shutdown
// (1053), MySQL 8's wait_timeout (4031).
const CONNECTION_ENDED = new Set([1927, 1053, 4031]);

// A deadlock (also how InnoDB answers a serialization conflict) rolls back the whole transaction.
const DEADLOCK = 1213;
const errnoOf = (error: unknown) => (error as { errno?: number } | undefined)?.errno;

/** True when a statement failed because its connection did; mysql2 marks those `fatal`. */
function isConnectionFailure(error: unknown): boolean {
  const { fatal, errno } = (error ?? {}) as { fatal?: boolean; errno?: number };
  return fatal === true || CONNECTION_ENDED.has(errno ?? 0);
}

/** What mysql2 keeps untyped: the server's last status flags, the socket. */
const internals = (conn: MysqlConnection) =>
  conn as unknown as { serverStatus?: number; stream?: { ref(): void; unref(): void } & Cut };
type Cut = { destroy(): void };

/** mysql2's callback API, once, as a promise (its promise wrapper is one object more per call). */
function call<T = void>(
  start: (done: (error: Error | null, value?: T) => void) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    start((error, value) => (error ? reject(error) : resolve(value as T)));
  });
}

// mysql2 warns about options it does not know: ours are not passed on.
type Name = keyof MysqlOptions;
const POOL: Name[] = ['max', 'acquireTimeoutMillis', 'closeTimeoutMillis', 'resetTimeoutMillis'];
const OURS: Name[] = [...POOL, 'leakDetectionThresholdMillis', 'logger', 'idleTimeoutMillis'];

class MysqlDriver implements Driver<MysqlConnection> {
  // Private, so the password never shows up in console.log(db).
  readonly #config: mysql.ConnectionOptions;
  readonly #onConnect: MysqlOptions['onConnect'];
  readonly #idleTimeoutMillis: number;
  readonly #logger: Logger;
  readonly #all = new Set<MysqlConnection>();
  readonly #idle: MysqlConnection[] = [];
  readonly #idleTimers = new Map<MysqlConnection, ReturnType<typeof setTimeout>>();
  /** Connections a statement changed the session state of: reset on check-in. */
  readonly #sessionChanged = new WeakSet<MysqlConnection>();
  /** Connections whose transaction a deadlock rolled back: their COMMIT must fail. */
  readonly #rolledBack = new WeakSet<MysqlConnection>();
  /**
   * Each connection's sql_mode as it opened: the server adds IGNORE_SPACE for mysql2's client
   * flag, which COM_RESET_CONNECTION drops (the charset it keeps).
   */
  readonly #sqlMode = new WeakMap<MysqlConnection, string>();

  constructor(options: MysqlOptions) {
    // Opening a connection gives up after this; the wait for a free one is the runtime's.
    const config: Record<string, unknown> = { connectTimeout: 5000, ...options };
    for (const ours of [...OURS, 'onConnect']) delete config[ours];
    this.#config = config;
    this.#onConnect = options.onConnect;
    this.#idleTimeoutMillis = options.idleTimeoutMillis ?? 10000;
    this.#logger = options.logger ?? defaultLogger;
  }

  async checkOut(): Promise<MysqlConnection> {
    for (let conn = this.#idle.pop(); conn !== undefined; conn = this.#idle.pop()) {
      clearTimeout(this.#idleTimers.get(conn));
      // An idle connection the server closed meanwhile (a restart, wait_timeout) is dropped.
      if (this.isBroken(conn)) this.#drop(conn);
      else {
        internals(conn).stream?.ref();
        return conn;
      }
    }
    return this.#open();
  }

  async #open(): Promise<MysqlConnection> {
    let conn: MysqlConnection | undefined;
    try {
      const opening = mysql.createConnection(this.#config);
      conn = opening;
      // A connection whose server goes away while idle emits 'error'; with no listener Node
      // would crash. isBroken() sees it from the connection's state.
      opening.on('error', () => {});
      await call((done) => opening.connect(done));
      this.#all.add(opening);
      const [row] = await this.#query<{ mode: string }[]>(opening, 'SELECT @@sql_mode AS mode');
      this.#sqlMode.set(opening, row?.mode ?? '');
      await this.#onConnect?.(opening.promise());
      return opening;
    } catch (error) {
      if (conn !== undefined) this.#drop(conn);
      this.#logger.error(
        `db-hooks: could not open a MySQL connection (${(error as Error).message}). Check that ` +
          'the server is up, that DATABASE_URL points to it, and the onConnect hook if any.',
      );
      throw new DatabaseUnavailableError({ cause: error });
    }
  }

  checkIn(conn: MysqlConnection, discard: boolean): void {
    if (discard || this.isBroken(conn)) {
      // At once, a statement in flight too (closePool() past its timeout): not after it ends.
      this.#drop(conn, true);
      return;
    }
    // Idle connections never keep the process alive, e.g. after a late statement reopened the
    // pool during shutdown.
    internals(conn).stream?.unref();
    const timer = setTimeout(() => {
      if (this.#idle.includes(conn)) this.#idle.splice(this.#idle.indexOf(conn), 1);
      this.#drop(conn);
    }, this.#idleTimeoutMillis);
    timer.unref();
    this.#idleTimers.set(conn, timer);
    this.#idle.push(conn);
  }

  /** Closes `conn` without waiting for it; a failure to close is only logged. */
  #drop(conn: MysqlConnection, now = false): void {
    this.#close(conn, now).catch((error: unknown) => {
      this.#logger.warn('db-hooks: could not close a MySQL connection:', error);
    });
  }

  async #close(conn: MysqlConnection, now = false): Promise<void> {
    this.#all.delete(conn);
    clearTimeout(this.#idleTimers.get(conn));
    this.#idleTimers.delete(conn);
    // mysql2's destroy() half-closes the socket, which lets a statement in flight finish (a
    // SLEEP answers 1): cut, its statement fails. Idle, COM_QUIT ends the session at once.
    if (this.isBroken(conn)) conn.destroy();
    else if (now) internals(conn).stream?.destroy();
    else await call((done) => conn.end(() => done(null)));
  }

  isBroken(conn: MysqlConnection): boolean {
    const state = conn.state;
    return state === 'error' || state === 'disconnected';
  }

  changedSession(conn: MysqlConnection): boolean {
    // SERVER_STATUS_IN_TRANS: a BEGIN run by hand and left open.
    return this.#sessionChanged.has(conn) || ((internals(conn).serverStatus ?? 0) & 1) === 1;
  }

  /**
   * As a new connection: COM_RESET_CONNECTION rolls back a transaction left open, clears user
   * variables, sets SET SESSION variables back to the server's globals, drops temporary tables,
   * releases GET_LOCK and LOCK TABLES locks and prepared statements; onConnect sets up again
   * what it set up at first. A transaction begun by hand alone only needs a ROLLBACK.
   */
  async resetSession(conn: MysqlConnection): Promise<void> {
    if (!this.#sessionChanged.delete(conn)) {
      await this.#query(conn, 'ROLLBACK');
      return;
    }
    await call((done) => conn.reset(done));
    await this.#query(conn, 'SET SESSION sql_mode = ?', [this.#sqlMode.get(conn)]);
    await this.#onConnect?.(conn.promise());
  }

  #query<T = unknown>(conn: MysqlConnection, sql: string, values?: unknown): Promise<T> {
    return call<T>((done) =>
      conn.query(
        { sql, values: values as mysql.QueryValues },
        (error: Error | null, rows: unknown) => done(error, rows as T),
      ),
    );
  }

  async closeAll(): Promise<void> {
    this.#idle.length = 0;
    await Promise.all([...this.#all].map((conn) => this.#close(conn)));
  }

  size(): { total: number; idle: number } {
    return { total: this.#all.size, idle: this.#idle.length };
  }

  async execute<M extends StatementMode>(
    conn: MysqlConnection,
    mode: M,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): Promise<StatementResults[M]> {
    if (mysqlChangesSession(sql)) this.#sessionChanged.add(conn);
    let result: unknown;
    // mysql2 queues statements sent at once on one connection (Promise.all) and runs them in
    // turn; query() (not execute()) leaves no prepared statement on the server.
    try {
      result = await call<unknown>((done) =>
        conn.query(
          {
            sql,
            values: params as mysql.QueryValues,
            rowsAsArray: options?.rowMode === 'array',
            ...(options?.types !== undefined && { typeCast: options.types as mysql.TypeCast }),
          },
          (error: Error | null, value: unknown) => done(error, value),
        ),
      );
    } catch (error) {
      if (errnoOf(error) === DEADLOCK) this.#rolledBack.add(conn);
      if (!isConnectionFailure(error) && !this.isBroken(conn)) throw error;
      if (!this.isBroken(conn)) conn.destroy(); // the server ends it; don't wait for the socket
      this.#logger.error(
        `db-hooks: lost the MySQL connection during a statement (${(error as Error).message}).`,
      );
      throw new DatabaseUnavailableError({ cause: error });
    }
    const rows = Array.isArray(result) ? (result as unknown[]) : [];
    const header = Array.isArray(result) ? undefined : (result as mysql.ResultSetHeader);
    // As SQLite's: no count for a statement that returns rows. insertId 0: the statement
    // inserted no AUTO_INCREMENT row (several rows: the first one's, as LAST_INSERT_ID()).
    const raw: RawResult = { rows };
    if (header !== undefined) raw.changes = header.affectedRows;
    if (header?.insertId) raw.lastInsertId = header.insertId;
    const run = {
      changes: raw.changes ?? 0,
      ...(raw.lastInsertId && { lastInsertId: raw.lastInsertId }),
    };
    const results: StatementResults = { all: rows, get: rows[0], run, raw };
    return results[mode];
  }

  stream(conn: MysqlConnection, sql: string, params: Params | undefined, size: number): RowCursor {
    return mysqlCursor(conn, sql, params, size);
  }

  async begin(conn: MysqlConnection, _turn?: () => void, options: TransactionOptions = {}) {
    this.#rolledBack.delete(conn);
    const { isolationLevel, readOnly } = options;
    if (isolationLevel !== undefined) {
      // For the next transaction only: no session state is left behind.
      const level = isolationLevel.toUpperCase();
      await this.execute(conn, 'run', `SET TRANSACTION ISOLATION LEVEL ${level}`, undefined);
    }
    const mode = readOnly === undefined ? '' : readOnly ? ' READ ONLY' : ' READ WRITE';
    await this.execute(conn, 'run', `START TRANSACTION${mode}`, undefined);
  }

  checkTransactionOptions({ deferrable }: TransactionOptions): void {
    if (deferrable === undefined) return;
    throw new TypeError('db.atomic(): MySQL has no deferrable transactions; leave the option out.');
  }

  isRetryable(error: unknown): boolean {
    return errnoOf(error) === DEADLOCK;
  }

  async commit(conn: MysqlConnection): Promise<void> {
    // After a deadlock the statements of a block that caught it ran outside any transaction:
    // the block must not count as committed.
    if (this.#rolledBack.delete(conn)) throw new TransactionFailedError();
    await this.execute(conn, 'run', 'COMMIT', undefined);
  }

  async rollback(conn: MysqlConnection): Promise<void> {
    await this.execute(conn, 'run', 'ROLLBACK', undefined);
  }
}
