/**
 * db-hooks driver for PostgreSQL, on pg's Client.
 *
 * The runtime decides when connections are checked out and returned, and runtime-postgres-pool
 * keeps them; this file runs statements, and keeps a server restart or a killed backend from
 * crashing the process: such a connection is marked broken, its statements fail with
 * DatabaseUnavailableError (503), and it is closed instead of reused. A connection whose session
 * state a statement changed (runtime-session) is reset when it goes back: DISCARD ALL, then
 * onConnect again.
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
  TransactionOptions,
} from './runtime-driver.js';
import {
  DatabaseUnavailableError,
  DbHooksError,
  TransactionFailedError,
} from './runtime-errors.js';
import { defaultLogger, type Logger } from './runtime-pool.js';
import { PostgresConnections } from './runtime-postgres-pool.js';
import { pgCursor } from './runtime-postgres-stream.js';
import { postgresSessionChange, type SessionChange } from './runtime-session.js';

/**
 * pg's PoolConfig: what pg's Client takes (connectionString, ssl, application_name,
 * statement_timeout, connectionTimeoutMillis, ...) and the pool options min, idleTimeoutMillis,
 * maxUses, maxLifetimeSeconds, allowExitOnIdle and onConnect (runtime-postgres-pool), with this
 * project's own options beside them.
 */
export interface PostgresOptions extends DatabaseOptions, pg.PoolConfig {
  /**
   * Set when connecting through PgBouncer in transaction pooling mode, where consecutive
   * transactions may run on different server connections. Statements that change session state
   * (SET, set_config(..., false), RESET, LISTEN, PREPARE, session advisory locks, temporary
   * tables that outlive a transaction) are then refused with an error that says what lasts one
   * transaction instead, e.g. `SET LOCAL` inside db.atomic(). The runtime never uses named
   * prepared statements in either mode.
   */
  pgbouncer?: boolean;
}

export class PostgresDatabase extends Database<pg.Client> {
  constructor(options: PostgresOptions = {}) {
    super(new PostgresDriver(options), options);
  }
}

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

/** Session state under PgBouncer's transaction pooling: the error says what to use instead. */
function refusedUnderPgBouncer(sql: string, change: SessionChange): DbHooksError {
  return new DbHooksError(
    'SESSION_STATE',
    `"${sql.trim().split(/\s+/, 2).join(' ')}": ${change.statement} changes session state, ` +
      'which PgBouncer in transaction pooling mode does not keep between transactions (the ' +
      `next one may run on another server connection). Instead: ${change.instead}; or ` +
      'connect without PgBouncer.',
  );
}

/**
 * True while the client is inside a transaction a BEGIN run by hand left open ('T', or 'E' after
 * an error). pg 8.21 and later report it; with an earlier pg this is never true.
 */
function inTransaction(client: pg.Client): boolean {
  const status = (
    client as { getTransactionStatus?: () => string | null }
  ).getTransactionStatus?.();
  return status === 'T' || status === 'E';
}

/** BEGIN with db.atomic()'s options (checked against their lists before they get here). */
function beginStatement(options: TransactionOptions = {}): string {
  const { isolationLevel, readOnly, deferrable } = options;
  const modes: string[] = [];
  if (isolationLevel !== undefined) modes.push(`ISOLATION LEVEL ${isolationLevel.toUpperCase()}`);
  if (readOnly !== undefined) modes.push(readOnly ? 'READ ONLY' : 'READ WRITE');
  if (deferrable !== undefined) modes.push(deferrable ? 'DEFERRABLE' : 'NOT DEFERRABLE');
  return modes.length === 0 ? 'BEGIN' : `BEGIN ${modes.join(', ')}`;
}

/**
 * The last statement sent on a client, while it runs. A request may run statements at once
 * (Promise.all) on its one connection, which runs one at a time: pg 8 queues the others with a
 * deprecation warning, and pg 9 will not queue them. So they wait for each other here. Kept on
 * the client itself: a Map of clients, written and cleared at every statement, makes the
 * garbage collector copy its table and the promises in it out of the young generation.
 */
const lastStatement = Symbol('db-hooks last statement');
type Client = pg.Client & { [lastStatement]?: Promise<pg.QueryResult> };

function positional(params: Params | undefined): unknown[] | undefined {
  if (params === undefined || Array.isArray(params)) return params as unknown[] | undefined;
  throw new TypeError('PostgreSQL takes positional parameters: an array for $1, $2...');
}

/**
 * Sends a statement: as text and values, or, for raw() with the ORM's row mode or type parsers,
 * as a config object (which pg copies whole, property by property: only when needed).
 */
function send(
  client: pg.Client,
  sql: string,
  values: unknown[] | undefined,
  options: RawOptions | undefined,
): Promise<pg.QueryResult> {
  if (options?.types === undefined && options?.rowMode !== 'array') {
    return client.query(sql, values);
  }
  const config: pg.QueryConfig = { text: sql, values };
  if (options.types !== undefined) config.types = options.types as pg.CustomTypesConfig;
  if (options.rowMode === 'array') (config as pg.QueryArrayConfig).rowMode = 'array';
  return client.query(config);
}

class PostgresDriver implements Driver<pg.Client> {
  // Private, so the connection string never shows up in console.log(db).
  readonly #config: pg.PoolConfig;
  readonly #connections: PostgresConnections;
  readonly #pgbouncer: boolean;
  readonly #logger: Logger;
  /** Clients whose connection failed: closed on check-in instead of reused. */
  readonly #broken = new WeakSet<pg.Client>();
  /** Clients a statement changed the session state of: reset on check-in. */
  readonly #sessionChanged = new WeakSet<pg.Client>();

  constructor(options: PostgresOptions) {
    // pg's Client takes its own options from these and ignores the rest.
    this.#config = {
      // Opening a connection gives up after this; the wait for a free one is the runtime's.
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 10000,
      // Idle connections never keep the process alive, e.g. after a late statement reopened
      // the pool during shutdown.
      allowExitOnIdle: true,
      ...options,
    };
    // A checked-out client whose connection fails is marked broken (an idle one is closed).
    this.#connections = new PostgresConnections(this.#config, (client) => this.#broken.add(client));
    this.#pgbouncer = options.pgbouncer ?? false;
    this.#logger = options.logger ?? defaultLogger;
  }

  checkOut(): pg.Client | Promise<pg.Client> {
    return this.#connections.takeIdle() ?? this.#open();
  }

  async #open(): Promise<pg.Client> {
    try {
      return await this.#connections.open();
    } catch (error) {
      this.#logger.error(
        `db-hooks: could not open a PostgreSQL connection (${(error as Error).message}). Check ` +
          'that the server is up, that DATABASE_URL points to it, and the onConnect hook if any.',
      );
      throw new DatabaseUnavailableError({ cause: error });
    }
  }

  checkIn(client: pg.Client, discard: boolean): void {
    this.#connections.checkIn(client, discard);
  }

  isBroken(client: pg.Client): boolean {
    return this.#broken.has(client);
  }

  changedSession(client: pg.Client): boolean {
    return this.#sessionChanged.has(client) || inTransaction(client);
  }

  /**
   * As a new connection: a transaction begun by hand is rolled back; then DISCARD ALL resets
   * every setting (SET ROLE and SESSION AUTHORIZATION too) to what the connection opened with
   * (pg's own options, such as statement_timeout, included), drops temporary tables, releases
   * advisory locks, stops listening, and drops prepared statements and cursors, and onConnect
   * sets up again what it set up at first.
   */
  async resetSession(client: pg.Client): Promise<void> {
    if (inTransaction(client)) await client.query('ROLLBACK');
    if (!this.#sessionChanged.delete(client)) return;
    await client.query('DISCARD ALL');
    await Promise.resolve(this.#config.onConnect?.(client));
  }

  closeAll(): Promise<void> {
    return this.#connections.closeAll();
  }

  size(): { total: number; idle: number } {
    return this.#connections.size();
  }

  async execute<M extends StatementMode>(
    client: pg.Client,
    mode: M,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): Promise<StatementResults[M]> {
    const change = postgresSessionChange(sql);
    if (change !== undefined) {
      if (this.#pgbouncer) throw refusedUnderPgBouncer(sql, change);
      this.#sessionChanged.add(client);
    }
    // No values means pg's simple query protocol, as for an undefined `params`.
    const result = await this.#query(client, sql, positional(params), options);
    const changes = result.rowCount ?? undefined;
    const results: StatementResults = {
      all: result.rows,
      get: result.rows[0],
      run: { changes: changes ?? 0 },
      raw: { rows: result.rows, changes } satisfies RawResult,
    };
    if (options?.columns) {
      results.raw.columns = result.fields.map(({ name, dataTypeID }) => ({
        name,
        type: dataTypeID,
      }));
    }
    return results[mode];
  }

  /** Sends a statement once those before it on this client are done; the last result. */
  async #query(
    client: pg.Client,
    sql: string,
    values?: unknown[],
    options?: RawOptions,
  ): Promise<pg.QueryResult> {
    const next = () => send(client, sql, values, options);
    const previous = (client as Client)[lastStatement];
    const query = previous === undefined ? next() : previous.then(next, next);
    (client as Client)[lastStatement] = query;
    let result: pg.QueryResult;
    try {
      result = await query;
    } catch (error) {
      throw this.#failure(client, error);
    } finally {
      if ((client as Client)[lastStatement] === query)
        (client as Client)[lastStatement] = undefined;
    }
    // Several statements in one simple query give one result each: the last one answers.
    return Array.isArray(result) ? (result as pg.QueryResult[]).at(-1)! : result;
  }

  /** What a statement's failure becomes: a lost connection is marked broken, and a 503. */
  #failure(client: pg.Client, error: unknown): Error {
    // The 'error' listener may have marked the client already: pg then refuses the query
    // with "not queryable" before it reaches the server.
    if (!isConnectionFailure(error) && !this.#broken.has(client)) return error as Error;
    this.#broken.add(client);
    this.#logger.error(
      `db-hooks: lost the PostgreSQL connection during a statement (${(error as Error).message}).`,
    );
    return new DatabaseUnavailableError({ cause: error });
  }

  /** db.stream(): a cursor on the server (runtime-postgres-stream). */
  async stream(client: pg.Client, sql: string, params: Params | undefined, batchSize: number) {
    await (client as Client)[lastStatement]?.catch(() => {}); // after the statements sent before it
    const fail = (error: unknown) => this.#failure(client, error);
    return pgCursor(client, sql, positional(params), batchSize, fail, this.#broken);
  }

  async begin(client: pg.Client, _turn?: () => void, options?: TransactionOptions) {
    await this.execute(client, 'run', beginStatement(options), undefined);
  }

  isRetryable(error: unknown): boolean {
    // serialization_failure, deadlock_detected: the transaction was rolled back whole.
    return error instanceof pg.DatabaseError && (error.code === '40001' || error.code === '40P01');
  }

  async commit(client: pg.Client): Promise<void> {
    // COMMIT of a failed transaction rolls it back, answering ROLLBACK without an error: say
    // so, or the block (and its onCommit callbacks) would count as committed.
    const result = await this.#query(client, 'COMMIT');
    if (result.command === 'ROLLBACK') throw new TransactionFailedError();
  }

  async rollback(client: pg.Client): Promise<void> {
    await this.execute(client, 'run', 'ROLLBACK', undefined);
  }
}
