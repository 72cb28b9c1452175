/**
 * db-hooks driver for PostgreSQL, on pg's Pool.
 *
 * The runtime decides when connections are checked out and returned; this file opens them with
 * pg, runs statements, and keeps a server restart or a killed backend from crashing the process:
 * such a connection is marked broken, its statements fail with DatabaseUnavailableError (503),
 * and it is closed instead of reused.
 */
import pg from 'pg';
import {
  Database,
  DatabaseUnavailableError,
  DbHooksError,
  type Params,
  type PoolOptions,
  type RawOptions,
  type RawResult,
  type RunResult,
  type StatementMode,
} from './runtime.js';

export interface PostgresOptions extends PoolOptions {
  /** postgres://user:password@host:port/database (pg also reads the PG* environment variables). */
  connectionString?: string;
  /** TLS options, passed to pg as they are. */
  ssl?: pg.PoolConfig['ssl'];
  /** Idle connections are closed after this long. Default 10000. */
  idleTimeoutMillis?: number;
  /** Connections are replaced after this age (0 = never). Default 0. */
  maxLifetimeSeconds?: number;
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

/** A raw() statement as pg takes it: its row mode and type parsers are the ORM's. */
function queryConfig(
  sql: string,
  values: unknown[] | undefined,
  options: RawOptions,
): pg.QueryConfig {
  const config: pg.QueryConfig = {
    text: sql,
    values,
    types: options.types as pg.CustomTypesConfig | undefined,
  };
  if (options.rowMode === 'array') (config as pg.QueryArrayConfig).rowMode = 'array';
  return config;
}

export class PostgresDatabase extends Database<pg.PoolClient> {
  // Private, so the connection string never shows up in console.log(db).
  readonly #pool: pg.Pool;
  readonly #pgbouncer: boolean;
  /** Clients whose connection failed: closed on release instead of reused. */
  readonly #broken = new WeakSet<pg.PoolClient>();
  /**
   * The last statement sent on each client, while it runs. A request may run statements at once
   * (Promise.all) on its one connection, which runs one at a time: pg 8 queues the others with a
   * deprecation warning, and pg 9 will not queue them. So they wait for each other here. (A
   * Map: an entry lasts one statement.)
   */
  readonly #running = new Map<pg.PoolClient, Promise<unknown>>();

  constructor(options: PostgresOptions = {}) {
    super(options);
    this.#pgbouncer = options.pgbouncer ?? false;
    this.#pool = new pg.Pool({
      connectionString: options.connectionString,
      ssl: options.ssl,
      // The runtime never asks for more than max at once, so pg's pool never queues: its
      // timeout only bounds how long opening a new connection may take.
      max: options.max ?? 10,
      connectionTimeoutMillis: options.acquireTimeoutMillis ?? 5000,
      idleTimeoutMillis: options.idleTimeoutMillis ?? 10000,
      maxLifetimeSeconds: options.maxLifetimeSeconds ?? 0,
    });
    // An idle client whose server connection dies makes the pool emit 'error'; with no listener
    // Node would crash. The pool has already dropped that client, so nothing to do.
    this.#pool.on('error', () => {});
    // A checked-out client has no pool listener: mark it broken instead of crashing.
    this.#pool.on('connect', (client) => {
      client.on('error', () => this.#broken.add(client));
    });
  }

  protected async acquireConnection(): Promise<pg.PoolClient> {
    try {
      return await this.#pool.connect();
    } catch (error) {
      this.logger.error(
        `db-hooks: could not connect to PostgreSQL (${(error as Error).message}). Check that ` +
          'the server is up and that DATABASE_URL points to it.',
      );
      throw new DatabaseUnavailableError({ cause: error });
    }
  }

  protected releaseConnection(client: pg.PoolClient, discard: boolean): void {
    client.release(discard); // release(true) closes the connection instead of reusing it
  }

  protected isBroken(client: pg.PoolClient): boolean {
    return this.#broken.has(client);
  }

  protected async execute(
    client: pg.PoolClient,
    mode: StatementMode,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): Promise<unknown> {
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
    const values = params as unknown[] | undefined;
    const send =
      options === undefined
        ? () => client.query(sql, values)
        : () => client.query(queryConfig(sql, values, options));
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
      this.logger.error(
        `db-hooks: lost the PostgreSQL connection during a statement (${(error as Error).message}).`,
      );
      throw new DatabaseUnavailableError({ cause: error });
    } finally {
      if (this.#running.get(client) === query) this.#running.delete(client);
    }
    if (mode === 'all') return result.rows;
    if (mode === 'get') return result.rows[0];
    if (mode === 'raw') {
      return { rows: result.rows, changes: result.rowCount ?? undefined } satisfies RawResult;
    }
    return { changes: result.rowCount ?? 0 } satisfies RunResult;
  }

  protected poolSize(): { total: number; idle: number } {
    return { total: this.#pool.totalCount, idle: this.#pool.idleCount };
  }

  protected async closeConnections(): Promise<void> {
    await this.#pool.end();
  }
}
