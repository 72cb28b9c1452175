/**
 * db-hooks runtime: the database object handlers use (db in index), on top of a driver
 * (runtime-postgres, runtime-sqlite) that opens connections and runs statements. Inside a
 * request every statement and transaction runs on the request's connection; outside one, each
 * statement (or transaction) borrows a connection for itself.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type {
  Driver,
  Params,
  RawOptions,
  RawResult,
  RunResult,
  StatementMode,
  StatementResults,
} from './runtime-driver.js';
import { ConnectionStateError, ScopeReleasedError } from './runtime-errors.js';
import type { Checkout } from './runtime-options.js';
import {
  defaultLogger,
  type Logger,
  Pool,
  type PoolOptions,
  type PoolStats,
} from './runtime-pool.js';
import { type Frame, type RequestScope, Scope, type ScopeContext } from './runtime-scope.js';
import { RowStream, type StreamOptions } from './runtime-stream.js';
import {
  type AtomicBlock,
  type AtomicOptions,
  atomic,
  type CommitHook,
  runCommitHooks,
} from './runtime-transaction.js';
import type { Waiter } from './runtime-wait.js';

export interface DatabaseOptions extends PoolOptions {
  /**
   * Warn when a request keeps a connection longer than this, naming it and where it checked the
   * connection out (HikariCP's leakDetectionThreshold). 0, the default, turns it off.
   */
  leakDetectionThresholdMillis?: number;
  /** Where warnings and the operator's side of errors go, the adapters' included. Default: console. */
  logger?: Logger;
}

export interface ConnectOptions {
  /** When the request already has its connection, return false instead of throwing. */
  reuseIfOpen?: boolean;
}

let scopeOf: <Conn>(database: Database<Conn>, label: string) => Scope<Conn>;
let frameOf: <Conn>(database: Database<Conn>) => Frame<Conn> | undefined;

export class Database<Conn = unknown> {
  readonly logger: Logger;
  readonly #frames = new AsyncLocalStorage<Frame<Conn>>();
  readonly #pool: Pool<Conn>;
  /** How connections are opened and statements run: runtime-postgres or runtime-sqlite. */
  protected readonly driver: Driver<Conn>;
  readonly #context: ScopeContext<Conn>;

  static {
    scopeOf = (database, label) => new Scope(label, database.#context);
    frameOf = (database) => database.#frames.getStore();
  }

  constructor(driver: Driver<Conn>, options: DatabaseOptions = {}) {
    this.logger = options.logger ?? defaultLogger;
    this.driver = driver;
    this.#pool = new Pool(driver, options, this.logger);
    this.#context = {
      frames: this.#frames,
      pool: this.#pool,
      driver,
      leakDetectionThresholdMillis: options.leakDetectionThresholdMillis ?? 0,
      logger: this.logger,
      afterCommit: (hooks) => runCommitHooks(hooks, (fn) => this.detached(fn), this.logger),
    };
  }

  query<T = Record<string, unknown>>(sql: string, params?: Params): Promise<T[]> {
    return this.#statement('all', sql, params) as Promise<T[]>;
  }

  get<T = Record<string, unknown>>(sql: string, params?: Params): Promise<T | undefined> {
    return this.#statement('get', sql, params) as Promise<T | undefined>;
  }

  run(sql: string, params?: Params): Promise<RunResult> {
    return this.#statement('run', sql, params);
  }

  /**
   * For ORM bindings: one statement, run as db.query() runs it, returning rows and the change
   * count together, as query builders expect. Their transactions go through atomic().
   */
  raw<Row = Record<string, unknown>>(
    sql: string,
    params?: Params,
    options?: RawOptions,
  ): Promise<RawResult<Row>> {
    return this.#statement('raw', sql, params, options) as Promise<RawResult<Row>>;
  }

  /** A query's rows as the loop asks for them, `for await (const row of db.stream(sql))`. */
  stream<T = Record<string, unknown>>(
    sql: string,
    params?: Params,
    options?: StreamOptions,
  ): RowStream<T> {
    const scope = this.#frames.getStore()?.scope as Scope<unknown> | undefined;
    const own = () => scopeOf(this, 'db.stream()') as Scope<unknown>;
    return new RowStream(this.driver, scope, own, sql, params, options);
  }

  /** Checks the current request's connection out now. False if it was already (reuseIfOpen). */
  async connect(options: ConnectOptions = {}): Promise<boolean> {
    const scope = this.#frames.getStore()?.scope;
    if (scope === undefined) {
      throw new ConnectionStateError(
        'db.connect() was called outside a request scope, so there is nothing to bind the ' +
          'connection to. Install the db-hooks adapter for your framework, or use ' +
          'db.connectionContext(fn) in scripts.',
      );
    }
    if (scope.releaseReason) throw new ScopeReleasedError(scope.releaseReason);
    const alreadyOpen = scope.hasConnection;
    if (alreadyOpen && !options.reuseIfOpen) {
      throw new ConnectionStateError(
        'The connection for this request is already open. Call db.connect() once per ' +
          'request, or pass { reuseIfOpen: true }.',
      );
    }
    scope.holdsConnection = true; // again, after a db.close()
    await scope.connect();
    return !alreadyOpen;
  }

  /**
   * Returns the current request's connection to the pool now; its later statements borrow one
   * each. False if it had none.
   */
  async close(): Promise<boolean> {
    const scope = this.#frames.getStore()?.scope;
    if (scope === undefined || scope.released) return false;
    if (scope.depth > 0) {
      throw new ConnectionStateError(
        'db.close() was called inside db.atomic(). Let the transaction finish (return or throw ' +
          'from the atomic() callback) before closing the connection.',
      );
    }
    scope.holdsConnection = false;
    return scope.checkIn();
  }

  /** True when the current request holds no connection. */
  isClosed(): boolean {
    return this.#frames.getStore()?.scope.conn === undefined;
  }

  /**
   * Runs fn with a connection: the current request's, or, outside a request, one checked out for
   * fn and returned when it settles (as peewee's connection_context).
   */
  connectionContext<T>(fn: () => Promise<T>): Promise<T> {
    const scope = this.#frames.getStore()?.scope;
    if (scope !== undefined && !scope.released) return fn();
    return this.#inOwnScope('connectionContext', 'eager', fn);
  }

  /**
   * Runs fn in a scope of its own, even inside a request: for work that outlives the response
   * (fire-and-forget jobs, a query per event of a long-lived stream). It checks a connection out
   * at its first statement and returns it when fn settles.
   */
  detached<T>(fn: () => Promise<T>): Promise<T> {
    return this.#inOwnScope('detached', 'lazy', fn);
  }

  /**
   * Runs fn in a transaction: commits when it returns, rolls back when it throws. Nested calls
   * use savepoints, so an inner failure rolls back only the inner part. See AtomicOptions.
   */
  atomic<T>(fn: AtomicBlock<T>, options: AtomicOptions = {}): Promise<T> {
    const frame = this.#frames.getStore();
    if (frame === undefined) return this.connectionContext(() => this.atomic(fn, options));
    return atomic(this.#context, frame, fn, options);
  }

  /**
   * Runs fn after the transaction the caller is in commits (the outermost one), never if the
   * part it was registered in rolls back; outside a transaction, at once. It runs as detached
   * work, outside the request; a failure is logged, never the request's.
   */
  onCommit(fn: CommitHook): void {
    const frame = this.#frames.getStore();
    const levels = frame?.scope.commitHooks;
    if (frame !== undefined && frame.depth > 0 && levels !== undefined) {
      levels.at(Math.min(frame.depth, levels.length) - 1)?.push(fn);
    } else {
      this.#context.afterCommit([fn]);
    }
  }

  /**
   * Decides how the request's own transaction (the adapter's `atomic` option) ends, whatever
   * the response status: true rolls it back, false commits it. A thrown error still rolls back.
   */
  setRollback(rollback: boolean): void {
    const transaction = this.#frames.getStore()?.scope.requestTransaction;
    if (transaction === undefined) {
      throw new ConnectionStateError(
        "db.setRollback() decides how a request's own transaction ends, and this code runs " +
          "in none: turn it on with the adapter's atomic option. In db.atomic(), throw instead.",
      );
    }
    transaction.rollback = rollback;
  }

  stats(): PoolStats {
    return this.#pool.stats();
  }

  /**
   * Refuses new checkouts (PoolClosedError, a 503), waits for the connections in use to come
   * back (up to closeTimeoutMillis), then closes every connection. Call it once the server has
   * stopped taking requests. The next checkout opens the pool again.
   */
  closePool(): Promise<void> {
    return this.#pool.close();
  }

  #statement<M extends StatementMode>(
    mode: M,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): Promise<StatementResults[M]> {
    const execute = (conn: Conn) => this.driver.execute(conn, mode, sql, params, options);
    const scope = this.#frames.getStore()?.scope;
    if (scope === undefined) return this.#borrow(execute);
    // After db.close(), each statement borrows a connection, still counted in flight.
    if (!scope.holdsConnection && scope.conn === undefined) {
      return scope.track(() => this.#borrow(execute, scope));
    }
    return scope.use(execute);
  }

  /**
   * A connection for one statement (or one transaction) outside any held connection, returned
   * (and reset, if the statement changed its session state) before the result is.
   */
  async #borrow<R>(use: (conn: Conn) => R | Promise<R>, waiter?: Waiter): Promise<R> {
    const conn = await this.#pool.checkOut(waiter);
    try {
      return await use(conn);
    } catch (error) {
      throw this.#pool.failure(conn, error);
    } finally {
      const resetting = this.#pool.checkIn(conn);
      if (resetting !== undefined) await resetting;
    }
  }

  async #inOwnScope<T>(label: string, checkout: Checkout, fn: () => Promise<T>): Promise<T> {
    const scope = scopeOf(this, label);
    try {
      if (checkout === 'eager') await scope.connect();
      return await scope.run(fn);
    } finally {
      await scope.release();
    }
  }
}

/** A new scope of `database` for one unit of work: the request lifecycles open one per request. */
export function createScope(database: Database, label = 'a request'): RequestScope {
  return scopeOf(database, label);
}

/** The scope the calling code runs in, if any (the hooks target's teardownRequest() ends it). */
export function currentScope(database: Database): RequestScope | undefined {
  return frameOf(database)?.scope;
}
