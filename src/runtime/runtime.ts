/**
 * db-hooks runtime: per-request database connections, the part every driver shares.
 *
 * Each request runs in a scope (an AsyncLocalStorage store). The scope checks a connection out of
 * the pool at the request's first statement (or at once, for eager checkout), every statement,
 * transaction and savepoint of that request then runs on it, and the scope gives it back exactly
 * once when the response is done. Code outside any request borrows a connection per statement
 * (or per transaction). The pool itself (its size, the wait for a free connection, shutdown and
 * leak detection) lives here too; the drivers (runtime-postgres, runtime-sqlite) only open, run
 * and close connections.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Statement parameters, in the driver's own placeholder style (`?` for SQLite, `$1` for PostgreSQL). */
export type Params = readonly unknown[] | Record<string, unknown>;

/** 'raw' is for ORM bindings: see Database#raw(). */
export type StatementMode = 'all' | 'get' | 'run' | 'raw';

export interface RunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
  /** SQLite's rowid of the last inserted row. PostgreSQL: use `RETURNING id` with get() instead. */
  lastInsertId?: number | bigint;
}

/** How raw() returns its rows, for ORMs that map rows themselves. */
export interface RawOptions {
  /** 'array': each row as an array of values in column order (no name clashes in joins). */
  rowMode?: 'object' | 'array';
  /** PostgreSQL: pg's type parsers for this statement (QueryConfig `types`). SQLite ignores it. */
  types?: unknown;
}

/** What raw() returns: the rows, and what the statement changed. */
export interface RawResult<Row = unknown> {
  rows: Row[];
  /** Rows inserted, updated or deleted; undefined for a SQLite statement that returns rows. */
  changes?: number;
  /** SQLite's rowid of the last inserted row. */
  lastInsertId?: number | bigint;
}

export interface PoolStats {
  /** Connections open (idle or in use). */
  total: number;
  idle: number;
  /** Connections checked out, or being opened for a checkout. */
  inUse: number;
  /** Checkouts waiting for a connection to come back. */
  waiting: number;
}

export interface PoolOptions {
  /** Most connections checked out at once. Default 10. */
  max?: number;
  /** How long a checkout waits for a free connection before PoolTimeoutError. Default 5000. */
  acquireTimeoutMillis?: number;
  /** closePool() waits this long for connections in use, then closes them anyway. Default 5000. */
  closeTimeoutMillis?: number;
  /**
   * Warn when one request keeps a connection longer than this (as HikariCP's
   * leakDetectionThreshold does), naming the request and where it checked the connection out.
   * 0 turns it off. Default 0.
   */
  leakDetectionThresholdMillis?: number;
  /** Where warnings and the operator's side of errors go. Default: console. */
  logger?: Pick<Console, 'warn' | 'error'>;
}

export interface ConnectOptions {
  /** When the request already has its connection, return false instead of throwing. */
  reuseIfOpen?: boolean;
}

/**
 * When a request's connection is checked out: `'lazy'` at its first statement (a request that
 * never queries never takes one), `'eager'` as soon as the request arrives.
 */
export type Checkout = 'lazy' | 'eager';

/** What every adapter takes as its last argument. */
export interface AdapterOptions<D extends Database = Database> {
  /** The database whose connections the requests use. Default: `db` from ./index. */
  database?: D;
  /** Default 'lazy'. */
  checkout?: Checkout;
}

/** Why a scope was released; it decides what a later database call of that request is told. */
export type ReleaseReason = 'done' | 'client-gone';

/** One request's scope, for framework adapters: create one per request, release it when done. */
export interface RequestScope {
  /** True once release() was called: later database calls in this scope throw ScopeReleasedError. */
  readonly released: boolean;
  /** Runs fn (and everything it awaits) inside this scope. Can be called again for the same request. */
  run<T>(fn: () => T): T;
  /** Checks the request's connection out now (eager checkout). PoolTimeoutError when none is free in time. */
  connect(): Promise<void>;
  /**
   * Ends the scope: waits for the statement in flight, rolls back a transaction left open, returns
   * the connection to the pool exactly once, and refuses the request's later database calls.
   * Safe to call any number of times, at any moment. Never rejects.
   */
  release(reason?: ReleaseReason): Promise<void>;
}

export class DbHooksError extends Error {
  /** A stable, machine-readable code, e.g. 'POOL_TIMEOUT'. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DbHooksError';
    this.code = code;
  }
}

/**
 * The database cannot serve this request now but may soon: the pool is exhausted or closed, or
 * the server is unreachable. Its message is safe to show a client (the detail went to the log),
 * and frameworks answer 503: Express, Koa and Fastify read `status`/`statusCode`/`expose`, Hono
 * calls `getResponse()`.
 */
export class ServiceUnavailableError extends DbHooksError {
  readonly status = 503;
  readonly statusCode = 503;
  readonly expose = true;

  getResponse(): Response {
    return new Response(this.message, {
      status: 503,
      headers: { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '1' },
    });
  }
}

/** No connection became free in time. */
export class PoolTimeoutError extends ServiceUnavailableError {
  constructor(timeoutMillis: number) {
    super(
      'POOL_TIMEOUT',
      `No database connection became free within ${timeoutMillis} ms. Try again shortly.`,
    );
    this.name = 'PoolTimeoutError';
  }
}

/** The pool was closed with closePool(): the server is shutting down. */
export class PoolClosedError extends ServiceUnavailableError {
  constructor(options?: { cause?: unknown }) {
    super('POOL_CLOSED', 'The server is shutting down. Try again shortly.', options);
    this.name = 'PoolClosedError';
  }
}

/**
 * The database server could not be reached, or the connection to it broke (a restart, a killed
 * backend, a network failure). A retry can succeed once the server is back; the pool replaces
 * broken connections by itself.
 */
export class DatabaseUnavailableError extends ServiceUnavailableError {
  constructor(options?: { cause?: unknown }) {
    super('DATABASE_UNAVAILABLE', 'The database is unavailable. Try again shortly.', options);
    this.name = 'DatabaseUnavailableError';
  }
}

/** connect() or close() was called in a state where it makes no sense (as in peewee). */
export class ConnectionStateError extends DbHooksError {
  constructor(message: string) {
    super('CONNECTION_STATE', message);
    this.name = 'ConnectionStateError';
  }
}

/**
 * A database call from a request whose connection was already released. When the client went
 * away, it carries status 499 (client closed request) and `expose`, so frameworks do not log it
 * as a server error: there is no one left to answer.
 */
export class ScopeReleasedError extends DbHooksError {
  readonly reason: ReleaseReason;
  readonly status: number;
  readonly statusCode: number;
  readonly expose: boolean;

  constructor(reason: ReleaseReason) {
    super(
      'SCOPE_RELEASED',
      reason === 'client-gone'
        ? 'The client went away, so this request released its database connection and the ' +
            'call was refused.'
        : "This request's database connection was already released (the response was sent), " +
            'so the call was refused. Run work that outlives the response in db.detached(fn).',
    );
    this.name = 'ScopeReleasedError';
    this.reason = reason;
    this.status = this.statusCode = reason === 'client-gone' ? 499 : 500;
    this.expose = reason === 'client-gone';
  }
}

/** The Database internals a scope's methods call: bound once per database, not per request. */
interface ScopeControl<Conn> {
  run<T>(frame: Frame<Conn>, fn: () => T): T;
  connect(scope: Scope<Conn>): Promise<unknown>;
  release(scope: Scope<Conn>, reason: ReleaseReason): Promise<void>;
}

/**
 * One request's (or unit of work's) state, and the RequestScope its adapter holds. Mutable: the
 * first statement fills `conn`, release empties it.
 */
class Scope<Conn> implements RequestScope {
  conn: Conn | undefined = undefined;
  /** The checkout in progress, shared by statements that start before it completes. */
  connecting: Promise<Conn> | undefined = undefined;
  /** False after db.close(): later statements borrow a connection each instead. */
  holdsConnection = true;
  /** atomic() nesting on `conn`: 0 = no transaction, 1 = transaction, 2+ = savepoints. */
  depth = 0;
  /** Database calls in flight: release() waits for them before returning the connection. */
  active = 0;
  whenIdle: (() => void)[] = [];
  releaseReason: ReleaseReason | undefined = undefined;
  releasing: Promise<void> | undefined = undefined;
  /** The waits in progress (for a connection, for SQLite's turn to write), left on release. */
  leaveOnRelease: Set<LeaveQueue> | undefined = undefined;
  /** For leak detection: where the connection was checked out, and the pending warning. */
  checkedOutAt: Error | undefined = undefined;
  leakTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  leakReported = 0;
  /** What a leak warning names (see nameInWarnings()), e.g. 'GET /users/1?page=2'. */
  readonly label: string;
  /** The frame code runs in outside atomic(). */
  readonly #frame: Frame<Conn> = { scope: this, depth: 0 };
  readonly #control: ScopeControl<Conn>;

  constructor(label: string, control: ScopeControl<Conn>) {
    this.label = label;
    this.#control = control;
  }

  get released(): boolean {
    return this.releaseReason !== undefined;
  }

  run<T>(fn: () => T): T {
    return this.#control.run(this.#frame, fn);
  }

  async connect(): Promise<void> {
    await this.#control.connect(this); // refused (ScopeReleasedError) once released
  }

  release(reason: ReleaseReason = 'done'): Promise<void> {
    return this.#control.release(this, reason);
  }
}

/**
 * What code sees through AsyncLocalStorage: its request's scope, and the atomic() depth it runs
 * at. A nested atomic() runs at the scope's depth; a concurrent one in the same request (e.g. in
 * Promise.all) does not, and is refused instead of sharing the transaction.
 */
interface Frame<Conn> {
  scope: Scope<Conn>;
  depth: number;
}

/** A waiter in a WaitQueue: called with nothing when its turn comes, or with why it left. */
type Waiter = (error?: Error) => void;

/** Takes a waiter out of its queue early, rejecting its wait with `reason`. */
export type LeaveQueue = (reason: Error) => void;

/**
 * A FIFO of waiters with a deadline each: for a free connection here, and for SQLite's write
 * lock in its driver.
 */
export class WaitQueue {
  readonly #waiters: Waiter[] = [];

  get length(): number {
    return this.#waiters.length;
  }

  /**
   * Resolves when handOff() picks this waiter. Rejects with timeoutError() at the deadline, or
   * when its scope is released: while it waits, `leaveOnRelease` holds the function that takes
   * it out of the queue.
   */
  wait(
    timeoutMillis: number,
    timeoutError: () => Error,
    leaveOnRelease?: Set<LeaveQueue>,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const leave: LeaveQueue = (error) => {
        const index = this.#waiters.indexOf(waiter);
        if (index !== -1) this.#waiters.splice(index, 1);
        waiter(error);
      };
      const timer = setTimeout(() => leave(timeoutError()), timeoutMillis);
      const waiter: Waiter = (error) => {
        clearTimeout(timer);
        leaveOnRelease?.delete(leave);
        if (error === undefined) resolve();
        else reject(error);
      };
      leaveOnRelease?.add(leave);
      this.#waiters.push(waiter);
    });
  }

  /** Wakes the longest waiter; false if nobody waits. */
  handOff(): boolean {
    const waiter = this.#waiters.shift();
    waiter?.();
    return waiter !== undefined;
  }

  rejectAll(error: Error): void {
    for (const waiter of this.#waiters.splice(0)) waiter(error);
  }
}

/**
 * The database object handlers use. It owns the pool's accounting and every request's scope; a
 * driver subclass (runtime-postgres, runtime-sqlite) says how to handle one connection:
 *
 * - `acquireConnection()`: a connection, idle or newly opened, or a promise of it. Called only
 *   while fewer than `max` are checked out, so the driver never queues.
 * - `releaseConnection(conn, discard)`: takes a connection back; `discard` closes it instead of
 *   keeping it idle.
 * - `execute(conn, mode, sql, params)`: runs one statement; 'all' → rows, 'get' → the first row
 *   or undefined, 'run' → a RunResult, or a promise of it.
 * - `isBroken(conn)`: true when the connection can no longer be used (it is discarded).
 * - `closeConnections()`: closes every connection, idle ones and any still checked out.
 * - `poolSize()`: connections open, and how many of them are idle.
 * - Optional: `begin(conn, turn?)`, `commit(conn)` and `rollback(conn)` (BEGIN, COMMIT and
 *   ROLLBACK by default, synchronous or not), and `transactionTurn(leaveOnRelease)`: what a
 *   transaction waits for before it takes a connection (SQLite: its turn to write), so that a
 *   request queued behind another's transaction holds no connection meanwhile. It resolves with
 *   the function that gives the turn up, which begin() then takes over; its WaitQueue.wait() gets
 *   `leaveOnRelease`, so that releasing the request's scope ends the wait.
 */
export abstract class Database<Conn = unknown> {
  readonly #frames = new AsyncLocalStorage<Frame<Conn>>();
  readonly #max: number;
  readonly #acquireTimeoutMillis: number;
  readonly #closeTimeoutMillis: number;
  readonly #leakThresholdMillis: number;
  protected readonly logger: Pick<Console, 'warn' | 'error'>;

  /** Connections checked out. `#slotsTaken` also counts those being opened: at most `max`. */
  readonly #checkedOut = new Set<Conn>();
  #slotsTaken = 0;
  readonly #queue = new WaitQueue();
  #closing: Promise<void> | undefined;
  #forceClosed = false;
  /** Settles when the last checked-out connection comes back (for closePool()). */
  #allReturned: (() => void) | undefined;
  /**
   * Marks a request that already has a scope of this database (an adapter registered twice): a
   * property of the request, which is cheaper than a WeakMap entry per request.
   */
  readonly #scopeMark = Symbol('db-hooks scope');
  readonly #scopeControl: ScopeControl<Conn> = {
    // Already inside (a later framework hook re-entering): no new frame needed.
    run: (frame, fn) => (this.#frames.getStore() === frame ? fn() : this.#frames.run(frame, fn)),
    connect: (scope) => this.#track(scope, () => this.#connection(scope)),
    release: (scope, reason) => this.#release(scope, reason),
  };

  constructor(options: PoolOptions = {}) {
    this.#max = options.max ?? 10;
    this.#acquireTimeoutMillis = options.acquireTimeoutMillis ?? 5000;
    this.#closeTimeoutMillis = options.closeTimeoutMillis ?? 5000;
    this.#leakThresholdMillis = options.leakDetectionThresholdMillis ?? 0;
    this.logger = options.logger ?? console;
  }

  // --- The driver contract (see above) ----------------------------------------------------

  protected abstract acquireConnection(): Conn | Promise<Conn>;
  protected abstract releaseConnection(conn: Conn, discard: boolean): void;
  protected abstract execute(
    conn: Conn,
    mode: StatementMode,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): unknown;
  protected abstract isBroken(conn: Conn): boolean;
  protected abstract closeConnections(): void | Promise<void>;
  protected abstract poolSize(): { total: number; idle: number };

  protected transactionTurn?(leaveOnRelease: Set<LeaveQueue>): Promise<() => void>;

  /** How a transaction starts, commits and rolls back. A driver may answer synchronously. */
  protected begin(conn: Conn, turn?: () => void): unknown {
    turn?.(); // nothing here needs a turn held
    return this.execute(conn, 'run', 'BEGIN', undefined);
  }

  protected commit(conn: Conn): unknown {
    return this.execute(conn, 'run', 'COMMIT', undefined);
  }

  protected rollback(conn: Conn): unknown {
    return this.execute(conn, 'run', 'ROLLBACK', undefined);
  }

  // --- What handlers call ------------------------------------------------------------------

  query<T = Record<string, unknown>>(sql: string, params?: Params): Promise<T[]> {
    return this.#statement('all', sql, params) as Promise<T[]>;
  }

  get<T = Record<string, unknown>>(sql: string, params?: Params): Promise<T | undefined> {
    return this.#statement('get', sql, params) as Promise<T | undefined>;
  }

  run(sql: string, params?: Params): Promise<RunResult> {
    return this.#statement('run', sql, params) as Promise<RunResult>;
  }

  // --- For ORM bindings (kysely.ts, drizzle.ts) ---------------------------------------------

  /**
   * One statement, exactly as db.query() runs it (the request's connection, counted by release,
   * the first statement of a lazy checkout), returning rows and the change count together, as
   * query builders expect. Their transactions go through atomic().
   */
  raw<Row = Record<string, unknown>>(
    sql: string,
    params?: Params,
    options?: RawOptions,
  ): Promise<RawResult<Row>> {
    return this.#statement('raw', sql, params, options) as Promise<RawResult<Row>>;
  }

  // --- Connections -----------------------------------------------------------------------

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
    const alreadyOpen = scope.conn !== undefined || scope.connecting !== undefined;
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
    if (scope === undefined || scope.releaseReason) return false;
    if (scope.depth > 0) {
      throw new ConnectionStateError(
        'db.close() was called inside db.atomic(). Let the transaction finish (return or throw ' +
          'from the atomic() callback) before closing the connection.',
      );
    }
    scope.holdsConnection = false;
    return this.#detach(scope);
  }

  /** True when the current request holds no connection. */
  isClosed(): boolean {
    return this.#frames.getStore()?.scope.conn === undefined;
  }

  /**
   * Runs fn with a connection: the current request's, or, outside a request, one checked out for
   * fn and returned when it settles (as peewee's connection_context).
   */
  async connectionContext<T>(fn: () => Promise<T>): Promise<T> {
    const scope = this.#frames.getStore()?.scope;
    if (scope !== undefined && !scope.releaseReason) return fn();
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
   * use savepoints, so an inner failure rolls back only the inner part.
   */
  atomic<T>(fn: () => Promise<T>): Promise<T> {
    const frame = this.#frames.getStore();
    if (frame === undefined) return this.connectionContext(() => this.atomic(fn));
    const { scope } = frame;
    if (scope.releaseReason) return Promise.reject(new ScopeReleasedError(scope.releaseReason));
    if (frame.depth !== scope.depth) {
      return Promise.reject(
        new ConnectionStateError(
          'db.atomic() was called while another db.atomic() of the same request is running ' +
            '(for example in Promise.all). A request has one connection, so its transactions ' +
            'must run one after another: await each one before starting the next.',
        ),
      );
    }
    scope.holdsConnection = true; // a transaction needs one connection from BEGIN to COMMIT
    return scope.depth === 0 ? this.#transaction(scope, fn) : this.#savepoint(scope, fn);
  }

  stats(): PoolStats {
    return { ...this.poolSize(), inUse: this.#slotsTaken, waiting: this.#queue.length };
  }

  /**
   * Refuses new checkouts, waits for the connections in use to come back (up to
   * closeTimeoutMillis), then closes every connection.
   */
  closePool(): Promise<void> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  // --- What adapters call ------------------------------------------------------------------

  /** A scope for one unit of work; adapters use scopeForRequest() or scopeForFetch() instead. */
  createScope(label = 'a request'): RequestScope {
    return new Scope(label, this.#scopeControl);
  }

  /**
   * The scope of one node:http request, released exactly once when the exchange is over: the
   * response was sent, or the client went away (before the adapter ran, during the handler, or
   * while the response waited behind earlier pipelined ones). Events of `req` ('data', 'end')
   * run inside it too, so code that reads the body keeps the request's connection.
   *
   * Undefined when the request already has a scope of this database: an adapter registered twice
   * steps aside and the first one covers the request.
   */
  scopeForRequest(req: IncomingMessage, res: ServerResponse): RequestScope | undefined {
    if (!this.#markScoped(req)) return undefined;
    const scope = new Scope(`${req.method} ${req.url}`, this.#scopeControl);
    releaseWhenOver(req, res, scope);
    if (hasBody(req)) runEventsInScope(req, scope);
    return scope;
  }

  /**
   * The scope of one Web `Request`, released when its signal aborts (the client went away) and
   * otherwise by the caller, once the response body has been read (see releaseWhenRead()).
   * Undefined when the request already has a scope of this database.
   */
  scopeForFetch(request: Request): RequestScope | undefined {
    if (!this.#markScoped(request)) return undefined;
    const scope = new Scope(`${request.method} ${request.url}`, this.#scopeControl);
    const gone = () => void scope.release('client-gone');
    if (request.signal.aborted) gone();
    else request.signal.addEventListener('abort', gone, { once: true });
    return scope;
  }

  /** Marks the request as scoped by this database; false if it was already. */
  #markScoped(request: object): boolean {
    const marked = request as Record<symbol, true | undefined>;
    if (marked[this.#scopeMark]) return false;
    marked[this.#scopeMark] = true;
    return true;
  }

  // --- Scopes ------------------------------------------------------------------------------

  // Every statement takes this path: #track() written out, to spare it a closure and a promise.
  async #statement(
    mode: StatementMode,
    sql: string,
    params: Params | undefined,
    options?: RawOptions,
  ): Promise<unknown> {
    const scope = this.#frames.getStore()?.scope;
    const statement = (conn: Conn) => this.execute(conn, mode, sql, params, options);
    if (scope === undefined) return this.#borrow(statement);
    this.#enter(scope);
    try {
      if (!scope.holdsConnection && scope.conn === undefined) {
        return await this.#borrow(statement, scope);
      }
      return await statement(scope.conn ?? (await this.#connection(scope)));
    } catch (error) {
      throw this.#closedDuring(error);
    } finally {
      this.#leave(scope);
    }
  }

  async #transaction<T>(scope: Scope<Conn>, fn: () => Promise<T>): Promise<T> {
    scope.depth = 1; // at once, so that a concurrent atomic() sees it
    try {
      await this.#track(scope, async () => {
        const turn =
          scope.conn === undefined
            ? await this.#whileWaiting<() => void>(scope, this.transactionTurn?.bind(this))
            : undefined;
        try {
          const conn = await this.#connection(scope);
          await this.begin(conn, turn);
        } catch (error) {
          turn?.(); // never reached begin(), or begin() failed and gave it up already
          throw error;
        }
      });
    } catch (error) {
      scope.depth = 0;
      throw error;
    }
    let result: T;
    try {
      result = await this.#frames.run({ scope, depth: 1 }, fn);
    } catch (error) {
      // Refused if the scope was released meanwhile: release() has rolled back already.
      await this.#onConnection(scope, (conn) => this.rollback(conn)).catch(() => {});
      scope.depth = 0;
      throw error;
    }
    try {
      await this.#onConnection(scope, (conn) => this.commit(conn));
    } finally {
      scope.depth = 0;
    }
    return result;
  }

  async #savepoint<T>(scope: Scope<Conn>, fn: () => Promise<T>): Promise<T> {
    const depth = scope.depth;
    const name = `db_hooks_${depth}`;
    const execute = (sql: string) => (conn: Conn) => this.execute(conn, 'run', sql, undefined);
    scope.depth = depth + 1;
    try {
      await this.#onConnection(scope, execute(`SAVEPOINT ${name}`));
    } catch (error) {
      scope.depth = depth;
      throw error;
    }
    let result: T;
    try {
      result = await this.#frames.run({ scope, depth: depth + 1 }, fn);
    } catch (error) {
      await this.#onConnection(scope, async (conn) => {
        await execute(`ROLLBACK TO SAVEPOINT ${name}`)(conn);
        await execute(`RELEASE SAVEPOINT ${name}`)(conn);
      }).catch(() => {}); // a broken connection is discarded on release; report fn's error
      scope.depth = depth;
      throw error;
    }
    try {
      await this.#onConnection(scope, execute(`RELEASE SAVEPOINT ${name}`));
    } finally {
      scope.depth = depth;
    }
    return result;
  }

  /** Runs use() on the connection the scope already holds (inside a transaction). */
  #onConnection<R>(scope: Scope<Conn>, use: (conn: Conn) => R | Promise<R>): Promise<R> {
    return this.#track(scope, async () => {
      const conn = scope.conn;
      if (conn === undefined) throw new ScopeReleasedError(scope.releaseReason ?? 'done');
      return use(conn);
    });
  }

  /** Counts a call as in flight in this scope while it runs, so release() waits for it. */
  async #track<R>(scope: Scope<Conn>, call: () => Promise<R>): Promise<R> {
    this.#enter(scope);
    try {
      return await call();
    } catch (error) {
      throw this.#closedDuring(error);
    } finally {
      this.#leave(scope);
    }
  }

  #enter(scope: Scope<Conn>): void {
    if (scope.releaseReason) throw new ScopeReleasedError(scope.releaseReason);
    scope.active++;
  }

  #leave(scope: Scope<Conn>): void {
    scope.active--;
    if (scope.active === 0) for (const resolve of scope.whenIdle.splice(0)) resolve();
  }

  /** A statement cut off because closePool() closed its connection says so. */
  #closedDuring(error: unknown): unknown {
    const connectionFailed =
      error instanceof DatabaseUnavailableError || !(error instanceof DbHooksError);
    return this.#forceClosed && connectionFailed ? new PoolClosedError({ cause: error }) : error;
  }

  /** The scope's connection, checked out on first use. Concurrent callers share one checkout. */
  #connection(scope: Scope<Conn>): Promise<Conn> {
    if (scope.conn !== undefined) return Promise.resolve(scope.conn);
    if (scope.connecting === undefined && this.#leakThresholdMillis > 0) {
      // For leak detection, taken now: once the checkout completes, a handler that is not an
      // async function has left no frame on the stack.
      scope.checkedOutAt = new Error('checked out here');
    }
    scope.connecting ??= this.#checkOut(scope);
    return scope.connecting;
  }

  async #checkOut(scope: Scope<Conn>): Promise<Conn> {
    try {
      const conn = await this.#acquire(scope);
      scope.conn = conn; // released meanwhile: release() gives it back once we are done
      this.#watchForLeak(scope);
      if (scope.releaseReason) throw new ScopeReleasedError(scope.releaseReason);
      return conn;
    } finally {
      scope.connecting = undefined;
    }
  }

  /** Runs a wait of the scope's (a queue's wait() given its leaveOnRelease), cut short by release(). */
  #whileWaiting<T>(
    scope: Scope<Conn>,
    wait: ((leaveOnRelease: Set<LeaveQueue>) => Promise<T>) | undefined,
  ): Promise<T | undefined> {
    if (wait === undefined) return Promise.resolve(undefined);
    if (scope.releaseReason) return Promise.reject(new ScopeReleasedError(scope.releaseReason));
    scope.leaveOnRelease ??= new Set();
    return wait(scope.leaveOnRelease);
  }

  async #inOwnScope<T>(label: string, checkout: Checkout, fn: () => Promise<T>): Promise<T> {
    const scope = new Scope(label, this.#scopeControl);
    try {
      if (checkout === 'eager') await scope.connect();
      return await scope.run(fn);
    } finally {
      await scope.release();
    }
  }

  #release(scope: Scope<Conn>, reason: ReleaseReason): Promise<void> {
    if (scope.releasing === undefined) {
      scope.releaseReason = reason;
      if (scope.leaveOnRelease?.size) {
        const error = new ScopeReleasedError(reason);
        for (const leave of scope.leaveOnRelease) leave(error);
      }
      scope.releasing = this.#detach(scope).then(
        () => {},
        (error: unknown) => {
          this.logger.error('db-hooks: could not return a connection to the pool:', error);
        },
      );
    }
    return scope.releasing;
  }

  /** Waits for the scope's calls in flight, then returns its connection (once). */
  async #detach(scope: Scope<Conn>): Promise<boolean> {
    while (scope.active > 0) {
      await new Promise<void>((resolve) => scope.whenIdle.push(resolve));
    }
    const conn = scope.conn;
    if (conn === undefined) return false;
    const inTransaction = scope.depth > 0;
    scope.conn = undefined;
    scope.depth = 0;
    this.#reportReturn(scope);
    // A transaction left open is rolled back first; a connection that cannot is discarded.
    const rolledBack = inTransaction && !this.isBroken(conn) ? await this.#rollBack(conn) : true;
    this.#giveBack(conn, !rolledBack);
    return true;
  }

  async #rollBack(conn: Conn): Promise<boolean> {
    try {
      await this.rollback(conn);
      return true;
    } catch {
      return false;
    }
  }

  // --- The pool ----------------------------------------------------------------------------

  /** Waits for a free slot (up to acquireTimeoutMillis), then has the driver fill it. */
  async #acquire(scope?: Scope<Conn>): Promise<Conn> {
    if (this.#closing !== undefined) throw new PoolClosedError();
    if (this.#slotsTaken < this.#max) {
      this.#slotsTaken++;
    } else {
      // The slot is handed over by #freeSlot(), already counted.
      const timedOut = () => {
        this.logger.error(
          `db-hooks: no connection became free within ${this.#acquireTimeoutMillis} ms: all ` +
            `${this.#max} are in use. Make sure every request releases its connection, or ` +
            'raise max or acquireTimeoutMillis.',
        );
        return new PoolTimeoutError(this.#acquireTimeoutMillis);
      };
      const wait = (leaveOnRelease?: Set<LeaveQueue>) =>
        this.#queue.wait(this.#acquireTimeoutMillis, timedOut, leaveOnRelease);
      await (scope ? this.#whileWaiting(scope, wait) : wait());
    }
    let conn: Conn;
    try {
      conn = await this.acquireConnection();
    } catch (error) {
      this.#freeSlot();
      throw error;
    }
    if (this.#closing !== undefined) {
      this.releaseConnection(conn, false);
      this.#freeSlot();
      throw new PoolClosedError();
    }
    this.#checkedOut.add(conn);
    return conn;
  }

  /** Hands a connection back to the driver, and its slot to the next waiter. */
  #giveBack(conn: Conn, discard: boolean): void {
    if (!this.#checkedOut.delete(conn)) return; // closePool() closed it after its timeout
    this.releaseConnection(conn, discard || this.isBroken(conn));
    this.#freeSlot();
  }

  #freeSlot(): void {
    if (this.#queue.handOff()) return; // the slot goes straight to the next waiter
    this.#slotsTaken--;
    if (this.#slotsTaken === 0) this.#allReturned?.();
  }

  /** A connection for one statement (or one transaction) outside any held connection. */
  async #borrow<R>(use: (conn: Conn) => R, scope?: Scope<Conn>): Promise<Awaited<R>> {
    const conn = await this.#acquire(scope);
    try {
      return await use(conn);
    } catch (error) {
      throw this.#closedDuring(error);
    } finally {
      this.#giveBack(conn, false);
    }
  }

  async #shutDown(): Promise<void> {
    this.#queue.rejectAll(new PoolClosedError());
    if (this.#slotsTaken > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#allReturned = resolve;
        timer = setTimeout(resolve, this.#closeTimeoutMillis);
      });
      clearTimeout(timer);
    }
    // Past the timeout: close the connections still in use; their statements fail.
    this.#forceClosed = true;
    for (const conn of this.#checkedOut) {
      this.releaseConnection(conn, true);
      this.#slotsTaken--;
    }
    this.#checkedOut.clear();
    await this.closeConnections();
  }

  // --- Leak detection ----------------------------------------------------------------------

  #watchForLeak(scope: Scope<Conn>): void {
    const threshold = this.#leakThresholdMillis;
    if (threshold <= 0) return;
    scope.leakReported = 0;
    scope.leakTimer = setTimeout(() => {
      scope.leakReported = Date.now();
      const stack = scope.checkedOutAt?.stack?.split('\n').slice(1).join('\n');
      this.logger.warn(
        `db-hooks: ${nameInWarnings(scope.label)} has held a database connection for more than ${threshold} ` +
          `ms; it may have leaked. It was checked out at:\n${stack}`,
      );
    }, threshold);
    scope.leakTimer.unref();
  }

  #reportReturn(scope: Scope<Conn>): void {
    clearTimeout(scope.leakTimer);
    if (scope.leakReported > 0) {
      const late = Date.now() - scope.leakReported + this.#leakThresholdMillis;
      this.logger.warn(
        `db-hooks: ${nameInWarnings(scope.label)} returned its database connection after ${late} ms (reported above as a possible leak).`,
      );
    }
  }
}

/**
 * A scope's label as warnings name it: 'GET /users/1', without the query string (it may hold
 * tokens) or a Web request's origin. Done here, not per request: most scopes are never named.
 */
function nameInWarnings(label: string): string {
  const query = label.indexOf('?');
  const name = query === -1 ? label : label.slice(0, query);
  return name.replace(/ \w+:\/\/[^/]*/, ' ');
}

/** Per connection, its requests whose responses wait behind earlier pipelined ones. */
const queuedOnSocket = new WeakMap<Socket, Set<RequestScope>>();

function releaseWhenOver(req: IncomingMessage, res: ServerResponse, scope: RequestScope): void {
  const socket = req.socket;
  // The client left before the adapter ran (e.g. while an earlier middleware awaited).
  if (res.closed || socket.destroyed) {
    void scope.release('client-gone');
    return;
  }
  // A response queued behind earlier pipelined ones has no socket yet and, on Node 22, gets
  // neither 'finish' nor 'close' if the client hangs up before its turn (Node 24 emits 'close'):
  // the socket's own 'close' is the only sign.
  const queued = res.socket === null ? queuedOn(socket) : undefined;
  queued?.add(scope);
  // 'close', not 'finish': 'finish' comes only when the whole response was written, while
  // 'close' comes once for every response that got the connection, sent or cut off.
  res.on('close', () => {
    queued?.delete(scope);
    void scope.release(res.writableFinished ? 'done' : 'client-gone');
  });
}

function queuedOn(socket: Socket): Set<RequestScope> {
  const known = queuedOnSocket.get(socket);
  if (known !== undefined) return known;
  const queued = new Set<RequestScope>();
  queuedOnSocket.set(socket, queued);
  socket.on('close', () => {
    for (const scope of queued) void scope.release('client-gone');
  });
  return queued;
}

/** As body parsers decide it: a body is announced by its length or a transfer encoding. */
function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && length !== '0';
}

/**
 * Node emits a request's body events from the connection's context, not the request's: run
 * their listeners inside the scope, so a handler that reads the body keeps its connection.
 * Only for requests with a body: the wrapper costs every event of the request.
 */
function runEventsInScope(req: IncomingMessage, scope: RequestScope): void {
  const emit = req.emit.bind(req);
  req.emit = (event: string | symbol, ...args: unknown[]) => scope.run(() => emit(event, ...args));
}

/**
 * The same body, read inside the request's scope (so a body produced from the database uses
 * the request's connection), releasing the scope when it has been read or cancelled.
 */
export function releaseWhenRead(
  body: ReadableStream<Uint8Array>,
  scope: RequestScope,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const chunk = await scope.run(() => reader.read());
        if (chunk.done) {
          controller.close();
          await scope.release();
        } else {
          controller.enqueue(chunk.value);
        }
      } catch (error) {
        controller.error(error);
        await scope.release();
      }
    },
    async cancel(reason) {
      try {
        await reader.cancel(reason);
      } finally {
        await scope.release('client-gone');
      }
    },
  });
}
