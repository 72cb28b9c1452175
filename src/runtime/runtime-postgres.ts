/**
 * db-hooks runtime for PostgreSQL, on pg's Pool.
 *
 * Adds what a web server needs around the pool: a finite wait for a free connection, error
 * listeners so a database restart or a killed backend cannot crash the process, a rollback
 * before any connection goes back, broken connections destroyed instead of reused, and a
 * shutdown that waits for requests still using a connection.
 */
import pg from 'pg';
import type { Params, PoolStats, RunResult, StatementCallback, StatementMode } from './runtime.js';
import {
  Database,
  DatabaseUnavailableError,
  DbHooksError,
  DONE,
  PoolClosedError,
  PoolTimeoutError,
} from './runtime.js';

export interface PostgresOptions {
  /** postgres://user:password@host:port/database (pg also reads the PG* environment variables). */
  connectionString?: string;
  /** TLS options, passed to pg as they are. */
  ssl?: pg.PoolConfig['ssl'];
  /** Most connections open at once. Default 10. */
  max?: number;
  /** How long a request waits for a free connection before PoolTimeoutError. Default 5000. */
  acquireTimeoutMillis?: number;
  /** Idle connections are closed after this long. Default 10000. */
  idleTimeoutMillis?: number;
  /** Connections are replaced after this age (0 = never). Default 0. */
  maxLifetimeSeconds?: number;
  /** closePool() waits this long for connections in use, then closes them anyway. Default 5000. */
  closeTimeoutMillis?: number;
  /**
   * Set when connecting through PgBouncer in transaction pooling mode, where consecutive
   * statements may run on different server connections. Statements that change session state
   * (SET, RESET, LISTEN, PREPARE) are then refused with an error; use `SET LOCAL` inside
   * db.atomic() instead. The runtime never uses named prepared statements in either mode.
   */
  pgbouncer?: boolean;
}

// Session-level commands; SET LOCAL / SET TRANSACTION / SET CONSTRAINTS only last a transaction.
const SESSION_STATE =
  /^\s*(SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)|RESET\b|LISTEN\b|PREPARE\b)/i;

/** True when the server went away: refused, reset, shut down, or this backend was killed. */
function isConnectionLoss(error: unknown): boolean {
  if (error instanceof pg.DatabaseError) return /^(08|57P0)/.test(error.code ?? '');
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT)$/.test(code)) {
    return true;
  }
  return error instanceof Error && /Connection terminated/i.test(error.message);
}

/** True when the error means the connection itself is unusable, not just the statement. */
function isConnectionError(error: unknown): boolean {
  if (!(error instanceof pg.DatabaseError)) return true; // socket errors, "Connection terminated"
  // Class 08: connection exception; 57P01-57P05: server shutdown, backend terminated, etc.
  return /^(08|57P0)/.test(error.code ?? '');
}

export class PostgresDatabase extends Database<pg.PoolClient> {
  // A private field so the connection string never shows up in console.log(db).
  readonly #pool: pg.Pool;
  private readonly max: number;
  private readonly acquireTimeoutMillis: number;
  private readonly closeTimeoutMillis: number;
  private readonly pgbouncer: boolean;
  private readonly checkedOut = new Set<pg.PoolClient>();
  /** Clients that reported a connection error: destroyed on return instead of reused. */
  private readonly broken = new WeakSet<pg.PoolClient>();
  private closing: Promise<void> | undefined;

  constructor(options: PostgresOptions = {}) {
    super();
    this.max = options.max ?? 10;
    this.acquireTimeoutMillis = options.acquireTimeoutMillis ?? 5000;
    this.closeTimeoutMillis = options.closeTimeoutMillis ?? 5000;
    this.pgbouncer = options.pgbouncer ?? false;
    this.#pool = new pg.Pool({
      connectionString: options.connectionString,
      ssl: options.ssl,
      max: this.max,
      connectionTimeoutMillis: this.acquireTimeoutMillis,
      idleTimeoutMillis: options.idleTimeoutMillis ?? 10000,
      maxLifetimeSeconds: options.maxLifetimeSeconds ?? 0,
    });
    // An idle client whose server connection dies makes the pool emit 'error'; with no
    // listener Node would crash. The pool has already dropped that client, so nothing to do.
    this.#pool.on('error', () => {});
    // A checked-out client has no pool listener; a server restart must not crash us either.
    // Mark it broken: its next query fails, and it is destroyed when it goes back.
    this.#pool.on('connect', (client) => {
      client.on('error', () => this.broken.add(client));
    });
  }

  stats(): PoolStats {
    return {
      total: this.#pool.totalCount,
      idle: this.#pool.idleCount,
      inUse: this.checkedOut.size,
      waiting: this.#pool.waitingCount,
    };
  }

  closePool(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  // acquire and execute use pg's callback forms: pg makes no promise of its own then, and on
  // Node 20 each promise costs a hook call while AsyncLocalStorage is on.
  protected acquire(): Promise<pg.PoolClient> {
    if (this.closing !== undefined) return Promise.reject(new PoolClosedError());
    return new Promise((resolve, reject) => {
      this.#pool.connect((error, client) => {
        if (error || client === undefined) {
          reject(this.checkoutError(error));
        } else if (this.closing !== undefined) {
          client.release();
          reject(new PoolClosedError());
        } else {
          this.checkedOut.add(client);
          resolve(client);
        }
      });
    });
  }

  private checkoutError(error: unknown): unknown {
    if (this.closing !== undefined) return new PoolClosedError();
    if (error instanceof Error && error.message === 'timeout exceeded when trying to connect') {
      return new PoolTimeoutError(
        `No PostgreSQL connection became free within ${this.acquireTimeoutMillis} ms: all ` +
          `${this.max} connections of the pool are in use. Make sure every request releases ` +
          'its connection, raise max, or raise acquireTimeoutMillis.',
        { cause: error },
      );
    }
    if (isConnectionLoss(error)) {
      return new DatabaseUnavailableError(
        `Could not connect to PostgreSQL (${(error as Error).message}). The server may be down ` +
          'or restarting; requests succeed again once it is back. Check DATABASE_URL if it stays.',
        { cause: error },
      );
    }
    return error;
  }

  protected releaseConnection(client: pg.PoolClient, inTransaction: boolean): Promise<void> {
    // Not ours any more: closePool() already destroyed it after its timeout.
    if (!this.checkedOut.has(client)) return DONE;
    const broken = this.broken.has(client);
    if (inTransaction && !broken) return this.rollBackAndRelease(client);
    this.checkedOut.delete(client);
    client.release(broken); // release(true) closes the connection instead of reusing it
    return DONE;
  }

  private async rollBackAndRelease(client: pg.PoolClient): Promise<void> {
    let broken = false;
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true;
    }
    if (this.checkedOut.delete(client)) client.release(broken);
  }

  protected execute(
    client: pg.PoolClient,
    mode: StatementMode,
    sql: string,
    params: Params | undefined,
    callback: StatementCallback,
  ): void {
    if (this.pgbouncer && SESSION_STATE.test(sql)) {
      const error = new DbHooksError(
        'SESSION_STATE',
        `"${sql.trim().split(/\s+/, 2).join(' ')}" changes session state, which PgBouncer in ` +
          'transaction pooling mode does not keep between transactions. Use SET LOCAL inside ' +
          'db.atomic(), or connect without PgBouncer.',
      );
      callback(error);
      return;
    }
    if (params !== undefined && !Array.isArray(params)) {
      callback(new TypeError('PostgreSQL takes positional parameters: an array for $1, $2...'));
      return;
    }
    // No values means pg's simple query protocol, as for an undefined `params`.
    client.query(sql, (params ?? []) as unknown[], (error: Error | null, result) => {
      if (error) {
        if (isConnectionError(error)) this.broken.add(client);
        if (isConnectionLoss(error)) {
          callback(
            new DatabaseUnavailableError(
              `Lost the connection to PostgreSQL during a statement (${error.message}). ` +
                'The connection is replaced; the request can be retried.',
              { cause: error },
            ),
          );
        } else {
          callback(error);
        }
        return;
      }
      if (mode === 'all') callback(null, result.rows);
      else if (mode === 'get') callback(null, result.rows[0]);
      else callback(null, { changes: result.rowCount ?? 0 } satisfies RunResult);
    });
  }

  private async shutDown(): Promise<void> {
    const deadline = Date.now() + this.closeTimeoutMillis;
    while (this.checkedOut.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // Past the timeout: close the connections still in use; their statements fail.
    for (const client of this.checkedOut) {
      this.checkedOut.delete(client);
      client.release(true);
    }
    await this.#pool.end();
  }
}
