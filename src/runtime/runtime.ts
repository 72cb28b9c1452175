/**
 * db-hooks runtime: per-request database connections, the driver-independent part.
 *
 * A request gets its own scope (an AsyncLocalStorage store). `db.connect()` checks a connection
 * out of the pool into the current scope and `db.close()` gives it back, as in peewee; every
 * query, transaction and savepoint inside that request then runs on that one connection, and two
 * requests never share one. Code outside any request borrows a connection per statement (or per
 * transaction) and returns it at once. The drivers (runtime-postgres.ts, runtime-sqlite.ts) only
 * say how to check out, run and return connections.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/** Statement parameters, in the driver's own placeholder style (`?` for SQLite, `$1` for PostgreSQL). */
export type Params = readonly unknown[] | Record<string, unknown>;

export interface RunResult {
  /** Rows inserted, updated or deleted. */
  changes: number;
  /** SQLite's rowid of the last inserted row. PostgreSQL: use `RETURNING id` with get() instead. */
  lastInsertId?: number | bigint;
}

export interface PoolStats {
  /** Connections open (idle, in use, or still connecting). */
  total: number;
  idle: number;
  inUse: number;
  /** Callers waiting for a connection. */
  waiting: number;
}

export interface ConnectOptions {
  /** When the request already has its connection, return false instead of throwing. */
  reuseIfOpen?: boolean;
}

/** A request's scope, for framework adapters: create one per request, release it when done. */
export interface RequestScope {
  /** True once release() was called: later database calls in this scope throw ScopeReleasedError. */
  readonly released: boolean;
  /** Runs fn (and everything it awaits) inside this scope. Can be called again for the same request. */
  run<T>(fn: () => T): T;
  /** Checks a connection out for this request now. Rejects with PoolTimeoutError or PoolClosedError. */
  connect(): Promise<void>;
  /**
   * The same with a callback, called with no argument once the connection is checked out, or
   * with the error. When a connection is free it is called at once, before connect() returns,
   * so code it runs stays inside the caller's scope.run() and no promise is made.
   */
  connect(callback: (error?: Error) => void): void;
  /**
   * Checks a connection out, then runs fn inside this scope and returns what fn returns: fn's
   * own result when a connection was free at once (no promise made, no tick), else a promise
   * of it. When no connection can be had, the promise rejects with the error, or settles as
   * onError says. For promise-based middleware: `return scope.runConnected(next)`.
   */
  runConnected<T>(fn: () => T, onError?: (error: Error) => never): T | Promise<Awaited<T>>;
  /**
   * Gives the connection back. Safe to call more than once and at any time (e.g. on the
   * response's 'close' event): it waits for the statement in flight, rolls back an open
   * transaction, then returns the connection to the pool exactly once. Never rejects.
   */
  release(): Promise<void>;
}

/**
 * How a driver reports a statement's outcome, exactly once: `(null, result)` or `(error)`.
 * Possibly before execute() returns: SQLite answers synchronously.
 */
export type StatementCallback = (error: unknown, result?: unknown) => void;

export type StatementMode = 'all' | 'get' | 'run';

/**
 * One settled promise to return when there is nothing to wait for. On Node 20 every new promise
 * costs a hook call while AsyncLocalStorage is in use, and these paths run on every request.
 */
export const DONE: Promise<void> = Promise.resolve();

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
 * the server is unreachable. Web frameworks answer 503 (status/statusCode/expose below), and
 * adapters test for this class rather than for each case.
 */
export class ServiceUnavailableError extends DbHooksError {
  readonly status = 503;
  readonly statusCode = 503;
  readonly expose = true;
}

/** No connection became free in time. */
export class PoolTimeoutError extends ServiceUnavailableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('POOL_TIMEOUT', message, options);
    this.name = 'PoolTimeoutError';
  }
}

/** The pool was closed with closePool(); typically the server is shutting down. */
export class PoolClosedError extends ServiceUnavailableError {
  constructor(
    message = 'The connection pool is closed (closePool() was called), so no connection can be ' +
      'checked out. Stop serving requests before closing the pool, or create a new database object.',
  ) {
    super('POOL_CLOSED', message);
    this.name = 'PoolClosedError';
  }
}

/**
 * The database server could not be reached, or the connection to it broke mid-statement (a
 * restart, a killed backend, a network failure). Answered as 503: a retry can succeed once the
 * server is back, and the pool replaces broken connections by itself.
 */
export class DatabaseUnavailableError extends ServiceUnavailableError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DATABASE_UNAVAILABLE', message, options);
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

/** A database call from a request whose connection was already released. */
export class ScopeReleasedError extends DbHooksError {
  constructor() {
    super(
      'SCOPE_RELEASED',
      "This request's database connection was already released (the response finished or the " +
        'client went away), so the call was refused. Do not keep using the database after the ' +
        'response is sent; use db.connectionContext() for background work.',
    );
    this.name = 'ScopeReleasedError';
  }
}

/** What one request's scope holds. Mutable: connect() fills `conn`, close() empties it. */
class ScopeState<Conn> {
  conn: Conn | undefined = undefined;
  /** A checkout in progress, so a second connect() does not check out a second connection. */
  opening: Promise<void> | undefined = undefined;
  /** atomic() nesting on `conn`: 0 = no transaction, 1 = transaction, 2+ = savepoints. */
  depth = 0;
  /** Database calls in flight, so release() can wait for them before returning the connection. */
  active = 0;
  /** Who waits for `active` to reach 0 (release() does); allocated when first needed. */
  whenIdle: (() => void)[] | undefined = undefined;
  released = false;
}

/**
 * What code sees through AsyncLocalStorage: its request's scope, and the atomic() depth that
 * code runs at. A nested atomic() runs at the scope's depth; a concurrent one in the same
 * request (e.g. in Promise.all) does not, and is refused instead of sharing the transaction.
 */
interface Frame<Conn> {
  scope: ScopeState<Conn>;
  depth: number;
}

/**
 * The database object handlers use. Drivers implement checkout, statement execution and
 * return; everything about scopes and transactions lives here. Calls within one request share
 * its connection, so run that request's transactions one after another, not concurrently.
 */
export abstract class Database<Conn> {
  private readonly frames = new AsyncLocalStorage<Frame<Conn>>();

  /** Checks a connection out of the pool (PoolTimeoutError / PoolClosedError when it cannot). */
  protected abstract acquire(): Promise<Conn>;
  /** Returns a connection to the pool, rolling back first if it is still inside a transaction. */
  protected abstract releaseConnection(conn: Conn, inTransaction: boolean): Promise<void>;
  /**
   * Runs one statement and calls back with 'all' → rows, 'get' → first row or undefined,
   * 'run' → RunResult. A callback rather than a promise: the base class makes the one promise
   * a statement costs (on Node 20 each promise costs a hook call while AsyncLocalStorage is on).
   */
  protected abstract execute(
    conn: Conn,
    mode: StatementMode,
    sql: string,
    params: Params | undefined,
    callback: StatementCallback,
  ): void;
  /** A connection free right now, without waiting, or undefined. Optional: skips a few promises. */
  protected acquireNow(): Conn | undefined {
    return undefined;
  }
  abstract stats(): PoolStats;
  /** Refuses new checkouts, waits for connections in use (up to a timeout), closes them all. */
  abstract closePool(): Promise<void>;

  protected async begin(conn: Conn): Promise<void> {
    await this.executeAsync(conn, 'run', 'BEGIN');
  }

  protected async commit(conn: Conn): Promise<void> {
    await this.executeAsync(conn, 'run', 'COMMIT');
  }

  protected async rollback(conn: Conn): Promise<void> {
    await this.executeAsync(conn, 'run', 'ROLLBACK');
  }

  /** Binds a connection to the current request. Returns false if reused (reuseIfOpen). */
  async connect(options: ConnectOptions = {}): Promise<boolean> {
    const scope = this.frames.getStore()?.scope;
    if (scope === undefined) {
      throw new ConnectionStateError(
        'db.connect() was called outside a request scope, so there is nothing to bind the ' +
          'connection to. Install the db-hooks adapter for your framework (or wrap the server ' +
          'listener with requestScope()), or use db.connectionContext(fn) in scripts.',
      );
    }
    if (scope.released) throw new ScopeReleasedError();
    if (scope.conn !== undefined || scope.opening !== undefined) {
      if (!options.reuseIfOpen) {
        throw new ConnectionStateError(
          'The connection for this request is already open. Call db.connect() once per ' +
            'request, or pass { reuseIfOpen: true }.',
        );
      }
      await scope.opening;
      return false;
    }
    await this.open(scope);
    return true;
  }

  /** Returns the request's connection to the pool. False if it was not open. */
  async close(): Promise<boolean> {
    const scope = this.frames.getStore()?.scope;
    if (scope === undefined || scope.released) return false;
    if (scope.opening !== undefined) await scope.opening.catch(() => {});
    if (scope.conn === undefined) return false;
    if (scope.depth > 0) {
      throw new ConnectionStateError(
        'db.close() was called inside db.atomic(). Let the transaction finish (return or throw ' +
          'from the atomic() callback) before closing the connection.',
      );
    }
    await this.detach(scope);
    return true;
  }

  isClosed(): boolean {
    return this.frames.getStore()?.scope.conn === undefined;
  }

  /**
   * Runs fn with a connection: the current one if open, else one checked out for fn and
   * returned after it. Nested calls reuse the outer connection; only the outermost returns it.
   * Also the way out of a finished request: background work it started gets a scope of its own.
   */
  connectionContext<T>(fn: () => Promise<T>): Promise<T> {
    const scope = this.frames.getStore()?.scope;
    if (scope === undefined || scope.released) {
      const fresh = new ScopeState<Conn>();
      return this.frames.run({ scope: fresh, depth: 0 }, () => this.withConnection(fresh, fn));
    }
    return this.withConnection(scope, fn);
  }

  query<T = Record<string, unknown>>(sql: string, params?: Params): Promise<T[]> {
    return this.statement('all', sql, params) as Promise<T[]>;
  }

  get<T = Record<string, unknown>>(sql: string, params?: Params): Promise<T | undefined> {
    return this.statement('get', sql, params) as Promise<T | undefined>;
  }

  run(sql: string, params?: Params): Promise<RunResult> {
    return this.statement('run', sql, params) as Promise<RunResult>;
  }

  /**
   * Runs fn in a transaction: commits when it returns, rolls back when it throws. Nested calls
   * use savepoints, so an inner failure rolls back only the inner part.
   */
  async atomic<T>(fn: () => Promise<T>): Promise<T> {
    const frame = this.frames.getStore();
    const scope = frame?.scope;
    if (frame === undefined || scope === undefined) {
      return this.connectionContext(() => this.atomic(fn));
    }
    if (scope.released) throw new ScopeReleasedError();
    if (scope.opening !== undefined) await scope.opening;
    const conn = scope.conn;
    if (conn === undefined) return this.withConnection(scope, () => this.atomic(fn));

    const depth = scope.depth;
    if (frame.depth !== depth) {
      throw new ConnectionStateError(
        'db.atomic() was called while another db.atomic() of the same request is running (for ' +
          'example in Promise.all). A request has one connection, so its transactions must run ' +
          'one after another: await each one before starting the next.',
      );
    }
    const savepoint = `db_hooks_${depth}`;
    scope.depth = depth + 1; // at once, so that a concurrent atomic() sees it
    try {
      await this.track(scope, async () => {
        if (depth === 0) await this.begin(conn);
        else await this.executeAsync(conn, 'run', `SAVEPOINT ${savepoint}`);
      });
    } catch (error) {
      if (scope.conn === conn) scope.depth = depth;
      throw error;
    }

    let result: T;
    try {
      result = await this.frames.run({ scope, depth: depth + 1 }, fn);
    } catch (error) {
      // If the scope was released meanwhile, release() already rolled back: touch nothing.
      if (!scope.released && scope.conn === conn) {
        await this.track(scope, async () => {
          try {
            if (depth === 0) await this.rollback(conn);
            else {
              await this.executeAsync(conn, 'run', `ROLLBACK TO SAVEPOINT ${savepoint}`);
              await this.executeAsync(conn, 'run', `RELEASE SAVEPOINT ${savepoint}`);
            }
          } catch {
            // The connection is broken; the driver destroys it on return. Report fn's error.
          } finally {
            scope.depth = depth;
          }
        });
      }
      throw error;
    }

    if (scope.released || scope.conn !== conn) throw new ScopeReleasedError();
    await this.track(scope, async () => {
      try {
        if (depth === 0) await this.commit(conn);
        else await this.executeAsync(conn, 'run', `RELEASE SAVEPOINT ${savepoint}`);
      } finally {
        scope.depth = depth;
      }
    });
    return result;
  }

  /** A scope for one request; see RequestScope. Used by the framework adapters. */
  createScope(): RequestScope {
    const scope = new ScopeState<Conn>();
    const frame: Frame<Conn> = { scope, depth: 0 };
    let releasing: Promise<void> | undefined;
    const handle = {
      released: false,
      // Already inside (e.g. Fastify's preValidation re-entry on a GET): no new frame, which on
      // Node 24 is a copy of the context map.
      run: <T>(fn: () => T): T =>
        this.frames.getStore() === frame ? fn() : this.frames.run(frame, fn),
      connect: ((callback?: (error?: Error) => void): Promise<void> | undefined => {
        const connecting: Promise<void> = scope.released
          ? Promise.reject(new ScopeReleasedError())
          : scope.conn !== undefined
            ? DONE
            : (scope.opening ?? this.open(scope));
        if (callback === undefined) return connecting;
        // open() fills conn at once when a connection is free: no promise, no tick.
        if (scope.conn !== undefined && !scope.released) callback();
        else
          connecting.then(
            () => callback(),
            (error: Error) => callback(error),
          );
        return undefined;
      }) as RequestScope['connect'],
      runConnected: <T>(fn: () => T, onError?: (error: Error) => never) =>
        this.frames.run(frame, (): T | Promise<Awaited<T>> => {
          const connecting = handle.connect();
          if (scope.conn !== undefined && !scope.released) return fn();
          return connecting.then(fn, onError) as Promise<Awaited<T>>;
        }),
      release: () => {
        if (releasing === undefined) {
          handle.released = true;
          scope.released = true;
          releasing = this.detach(scope);
          if (releasing !== DONE) releasing = releasing.catch(reportReleaseError);
        }
        return releasing;
      },
    };
    return handle;
  }

  // Not async, like the few methods below: each async layer costs a promise per statement.
  private statement(mode: StatementMode, sql: string, params: Params | undefined) {
    const scope = this.frames.getStore()?.scope;
    if (scope === undefined)
      return this.borrow((conn) => this.executeAsync(conn, mode, sql, params));
    const conn = scope.conn;
    if (conn !== undefined && !scope.released) {
      // Counted in flight until the driver calls back, so release() waits for it. A driver that
      // answers at once (SQLite) gets a settled promise: cheaper than a pending one to make.
      scope.active++;
      let answered = false;
      let failure: unknown = null;
      let value: unknown;
      let later: { resolve(value: unknown): void; reject(error: unknown): void } | undefined;
      const callback: StatementCallback = (error, result) => {
        this.settle(scope);
        if (later === undefined) {
          answered = true;
          failure = error;
          value = result;
        } else if (error === null) later.resolve(result);
        else later.reject(error);
      };
      try {
        this.execute(conn, mode, sql, params, callback);
      } catch (error) {
        callback(error);
      }
      if (answered) return failure === null ? Promise.resolve(value) : Promise.reject(failure);
      return new Promise((resolve, reject) => {
        later = { resolve, reject };
      });
    }
    return this.statementWithoutConnection(scope, mode, sql, params);
  }

  /** A statement as a promise, outside the per-request fast path. */
  private executeAsync(
    conn: Conn,
    mode: StatementMode,
    sql: string,
    params?: Params,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.execute(conn, mode, sql, params, (error, result) => {
        if (error === null) resolve(result);
        else reject(error);
      });
    });
  }

  private async statementWithoutConnection(
    scope: ScopeState<Conn>,
    mode: StatementMode,
    sql: string,
    params: Params | undefined,
  ): Promise<unknown> {
    if (scope.released) throw new ScopeReleasedError();
    if (scope.opening !== undefined) {
      await scope.opening.catch(() => {});
      if (scope.conn !== undefined) return this.statement(mode, sql, params);
    }
    return this.track(scope, () =>
      this.borrow((conn) => this.executeAsync(conn, mode, sql, params)),
    );
  }

  /** A connection for one statement (or one transaction) outside any open connection. */
  private async borrow<R>(use: (conn: Conn) => Promise<R>): Promise<R> {
    const conn = await this.acquire();
    try {
      return await use(conn);
    } finally {
      await this.releaseConnection(conn, false);
    }
  }

  private async withConnection<T>(scope: ScopeState<Conn>, fn: () => Promise<T>): Promise<T> {
    if (scope.released) throw new ScopeReleasedError();
    if (scope.opening !== undefined) await scope.opening;
    if (scope.conn !== undefined) return fn();
    await this.open(scope);
    try {
      return await fn();
    } finally {
      if (!scope.released) await this.detach(scope);
    }
  }

  private open(scope: ScopeState<Conn>): Promise<void> {
    const conn = this.acquireNow();
    if (conn !== undefined) {
      scope.conn = conn;
      scope.depth = 0;
      return DONE;
    }
    scope.opening = this.checkOut(scope);
    return scope.opening;
  }

  private checkOut(scope: ScopeState<Conn>): Promise<void> {
    scope.active++; // counts as in flight: release() waits for the checkout to finish
    return this.acquire().then(
      (conn) => {
        scope.opening = undefined;
        // Released while we waited for the pool (e.g. the client went away): give it straight back.
        if (scope.released) {
          void this.releaseConnection(conn, false);
          this.settle(scope);
          throw new ScopeReleasedError();
        }
        scope.conn = conn;
        scope.depth = 0;
        this.settle(scope);
      },
      (error: unknown) => {
        scope.opening = undefined;
        this.settle(scope);
        throw error;
      },
    );
  }

  /** Waits for calls in flight, then returns the scope's connection (once: `conn` is cleared first). */
  private detach(scope: ScopeState<Conn>): Promise<void> {
    if (scope.active > 0) {
      scope.whenIdle ??= [];
      const waiting = scope.whenIdle;
      return new Promise<void>((resolve) => waiting.push(resolve)).then(() => this.detach(scope));
    }
    const conn = scope.conn;
    if (conn === undefined) return DONE;
    const inTransaction = scope.depth > 0;
    scope.conn = undefined;
    scope.depth = 0;
    return this.releaseConnection(conn, inTransaction);
  }

  /** Counts a database call as in flight in this scope while it runs. */
  private track<R>(scope: ScopeState<Conn>, call: () => Promise<R>): Promise<R> {
    if (scope.released) return Promise.reject(new ScopeReleasedError());
    scope.active++;
    let pending: Promise<R>;
    try {
      pending = call();
    } catch (error) {
      pending = Promise.reject(error);
    }
    return pending.then(
      (result) => {
        this.settle(scope);
        return result;
      },
      (error: unknown) => {
        this.settle(scope);
        throw error;
      },
    );
  }

  private settle(scope: ScopeState<Conn>): void {
    scope.active--;
    if (scope.active === 0 && scope.whenIdle !== undefined) {
      const waiting = scope.whenIdle;
      scope.whenIdle = undefined;
      for (const resolve of waiting) resolve();
    }
  }
}

/** release() never rejects; a failure to return a connection is a bug worth seeing in the logs. */
function reportReleaseError(error: unknown): void {
  console.error('db-hooks: could not return the connection to the pool:', error);
}
