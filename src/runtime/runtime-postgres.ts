/**
 * db-hooks driver for PostgreSQL, on pg's Pool.
 *
 * The runtime decides when connections are checked out and returned; this file opens them with
 * pg, runs statements, and keeps a server restart or a killed backend from crashing the process:
 * such a connection is marked broken, its statements fail with DatabaseUnavailableError (503),
 * and it is closed instead of reused.
 */
import pg from 'pg';
import { Database, type DatabaseOptions } from './runtime-database.js';
import type {
  Driver,
  Params,
  RawOptions,
  RawResult,
  StatementMode,
  StatementResults,
} from './runtime-driver.js';
import { DatabaseUnavailableError, DbHooksError } from './runtime-errors.js';
import type { Logger } from './runtime-pool.js';

/**
 * pg's PoolConfig (connectionString, ssl, application_name, statement_timeout, min, maxUses,
 * onConnect, ...), passed to pg as it is, with this project's own options beside it.
 */
export interface PostgresOptions extends DatabaseOptions, pg.PoolConfig {
  /**
   * Set when connecting through PgBouncer in transaction pooling mode, where consecutive
   * statements may run on different server connections. Statements that change session state
   * (SET, RESET, LISTEN, PREPARE) are then refused with an error; use `SET LOCAL` inside
   * db.atomic() instead. The runtime never uses named prepared statements in either mode.
   */
  pgbouncer?: boolean;
}

export class PostgresDatabase extends Database<pg.PoolClient> {
  constructor(options: PostgresOptions = {}) {
    super(new PostgresDriver(options), options);
  }
}

// Session-level commands; SET LOCAL / SET TRANSACTION / SET CONSTRAINTS only last a transaction.
const SESSION_STATE =
  /^\s*(SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)|RESET\b|LISTEN\b|PREPARE\b)/i;

/**
 * True when a statement failed because its connection did, not because of the SQL: a server
 * shutdown or killed backend (SQLSTATE class 08, 57P01-57P05), or a socket error (which pg
 * reports with the system's error code, e.g. ECONNRESET, or as "Connection terminated").
 */
function isConnectionFailure(error: unknown): boolean {
  if (error instanceof pg.DatabaseError) return /^(08|57P0)/.test(error.code ?? '');
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('E')) return true;
  return error instanceof Error && /Connection terminated/.test(error.message);
}

/** A statement as pg takes it; raw() passes the ORM's row mode and type parsers. */
function queryConfig(sql: string, values: unknown[] | undefined, options?: RawOptions) {
  const config: pg.QueryConfig = { text: sql, values };
  if (options?.types !== undefined) config.types = options.types as pg.CustomTypesConfig;
  if (options?.rowMode === 'array') (config as pg.QueryArrayConfig).rowMode = 'array';
  return config;
}

class PostgresDriver implements Driver<pg.PoolClient> {
  // Private, so the connection string never shows up in console.log(db).
  readonly #config: pg.PoolConfig;
  #pool: pg.Pool | undefined;
  readonly #pgbouncer: boolean;
  readonly #logger: Logger;
  /** Clients whose connection failed: closed on check-in instead of reused. */
  readonly #broken = new WeakSet<pg.PoolClient>();
  /**
   * The last statement sent on each client, while it runs. A request may run statements at once
   * (Promise.all) on its one connection, which runs one at a time: pg 8 queues the others with a
   * deprecation warning, and pg 9 will not queue them. So they wait for each other here.
   */
  readonly #running = new Map<pg.PoolClient, Promise<pg.QueryResult>>();

  constructor(options: PostgresOptions) {
    // pg takes its own options from these and ignores the rest.
    this.#config = {
      // Opening a connection gives up after this; the wait for a free one is the runtime's.
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 10000,
      // Idle connections never keep the process alive, e.g. after a late statement reopened
      // the pool during shutdown.
      allowExitOnIdle: true,
      ...options,
    };
    this.#pgbouncer = options.pgbouncer ?? false;
    this.#logger = options.logger ?? console;
  }

  /** pg's pool, made again after closeAll(). */
  #connections(): pg.Pool {
    if (this.#pool === undefined) {
      const pool = new pg.Pool(this.#config);
      // An idle client whose server connection dies makes the pool emit 'error'; with no
      // listener Node would crash. The pool has already dropped that client.
      pool.on('error', () => {});
      // A checked-out client has no pool listener: mark it broken instead of crashing.
      pool.on('connect', (client) => {
        client.on('error', () => this.#broken.add(client));
      });
      this.#pool = pool;
    }
    return this.#pool;
  }

  async checkOut(): Promise<pg.PoolClient> {
    try {
      return await this.#connections().connect();
    } catch (error) {
      this.#logger.error(
        `db-hooks: could not open a PostgreSQL connection (${(error as Error).message}). Check ` +
          'that the server is up, that DATABASE_URL points to it, and the onConnect hook if any.',
      );
      throw new DatabaseUnavailableError({ cause: error });
    }
  }

  checkIn(client: pg.PoolClient, discard: boolean): void {
    client.release(discard); // release(true) closes the connection instead of reusing it
  }

  isBroken(client: pg.PoolClient): boolean {
    return this.#broken.has(client);
  }

  async closeAll(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.end();
  }

  size(): { total: number; idle: number } {
    return { total: this.#pool?.totalCount ?? 0, idle: this.#pool?.idleCount ?? 0 };
  }

  async execute<M extends StatementMode>(
    client: pg.PoolClient,
    mode: M,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): Promise<StatementResults[M]> {
    if (this.#pgbouncer && SESSION_STATE.test(sql)) {
      throw new DbHooksError(
        'SESSION_STATE',
        `"${sql.trim().split(/\s+/, 2).join(' ')}" changes session state, which PgBouncer in ` +
          'transaction pooling mode does not keep between transactions. Use SET LOCAL inside ' +
          'db.atomic(), or connect without PgBouncer.',
      );
    }
    if (params !== undefined && !Array.isArray(params)) {
      throw new TypeError('PostgreSQL takes positional parameters: an array for $1, $2...');
    }
    // No values means pg's simple query protocol, as for an undefined `params`.
    const config = queryConfig(sql, params as unknown[] | undefined, options);
    const send = () => client.query(config);
    const previous = this.#running.get(client);
    const query = previous === undefined ? send() : previous.then(send, send);
    this.#running.set(client, query);
    let result: pg.QueryResult;
    try {
      result = await query;
    } catch (error) {
      // The 'error' listener may have marked the client already: pg then refuses the query
      // with "not queryable" before it reaches the server.
      if (!isConnectionFailure(error) && !this.#broken.has(client)) throw error;
      this.#broken.add(client);
      this.#logger.error(
        `db-hooks: lost the PostgreSQL connection during a statement (${(error as Error).message}).`,
      );
      throw new DatabaseUnavailableError({ cause: error });
    } finally {
      if (this.#running.get(client) === query) this.#running.delete(client);
    }
    const changes = result.rowCount ?? undefined;
    const results: StatementResults = {
      all: result.rows,
      get: result.rows[0],
      run: { changes: changes ?? 0 },
      raw: { rows: result.rows, changes } satisfies RawResult,
    };
    return results[mode];
  }

  async begin(client: pg.PoolClient): Promise<void> {
    await this.execute(client, 'run', 'BEGIN', undefined);
  }

  async commit(client: pg.PoolClient): Promise<void> {
    await this.execute(client, 'run', 'COMMIT', undefined);
  }

  async rollback(client: pg.PoolClient): Promise<void> {
    await this.execute(client, 'run', 'ROLLBACK', undefined);
  }
}
