/**
 * db-hooks runtime: one request's scope. The scope checks a connection out at the request's
 * first statement (or at once, for eager checkout), every statement of the request then runs on
 * it, and release() gives it back exactly once: after the statement in flight, with a
 * transaction left open rolled back, and refusing the request's later calls. This is the one
 * place those rules are written. It also warns about connections held too long (leak detection).
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import type { Driver } from './runtime-driver.js';
import { type ReleaseReason, ScopeReleasedError } from './runtime-errors.js';
import type { Logger, Pool } from './runtime-pool.js';
import {
  endRequestTransaction,
  type RequestTransaction,
  setRequestTransaction,
} from './runtime-request-transaction.js';
import { type RowStream, streamOpenError } from './runtime-stream.js';
import type { CommitHook } from './runtime-transaction.js';

/** One request's scope, as adapters hold it. */
export type RequestScope = Pick<
  Scope<unknown>,
  | 'released'
  | 'run'
  | 'connect'
  | 'release'
  | 'releaseSoon'
  | 'requestTransaction'
  | 'transact'
  | 'endTransaction'
>;

/**
 * What code sees through AsyncLocalStorage: its scope, and the atomic() depth it runs at. A
 * nested atomic() runs at the scope's depth; a concurrent one in the same request (e.g. in
 * Promise.all) does not, and is refused instead of sharing the transaction.
 */
export interface Frame<Conn> {
  scope: Scope<Conn>;
  depth: number;
}

/** What every scope of one database shares. */
export interface ScopeContext<Conn> {
  frames: AsyncLocalStorage<Frame<Conn>>;
  pool: Pool<Conn>;
  driver: Driver<Conn>;
  leakDetectionThresholdMillis: number;
  logger: Logger;
  /** Runs a committed transaction's db.onCommit() callbacks, outside its scope. */
  afterCommit(hooks: CommitHook[]): void;
}

export class Scope<Conn> {
  /** The request's connection, from its first statement until release (or db.close()). */
  conn: Conn | undefined = undefined;
  /** False after db.close(): later statements borrow a connection each instead. */
  holdsConnection = true;
  /** atomic() nesting on `conn`: 0 = no transaction, 1 = transaction, 2+ = savepoints. */
  depth = 0;
  /** db.onCommit() callbacks of the open transaction, a list per atomic() level. */
  commitHooks: CommitHook[][] | undefined = undefined;
  /** The request's own transaction (runtime-request-transaction), while it is on. */
  requestTransaction: RequestTransaction | undefined = undefined;
  /** Set until the request's own transaction has begun: its first statement begins it. */
  beginRequestTransaction: (() => Promise<void>) | undefined = undefined;
  /** The request's open db.stream(): its connection is the stream's until it closes. */
  stream: RowStream<unknown> | undefined = undefined;
  releaseReason: ReleaseReason | undefined = undefined;
  /** What a leak warning names, e.g. 'GET /users/1?page=2' (see nameInWarnings()). */
  readonly label: string;
  /** The checkout in progress, shared by statements that start before it completes. */
  #checkingOut: Promise<Conn> | undefined = undefined;
  /** Calls in flight: release() waits for them before returning the connection. */
  #active = 0;
  #whenIdle: (() => void)[] = [];
  #releasing: Promise<void> | undefined = undefined;
  /** Its waits in progress (for a connection, for SQLite's write turn): release() ends them. */
  #waits: Set<(error: Error) => void> | undefined = undefined;
  #checkedOutAt: Error | undefined = undefined;
  #leakTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #leakReportedAt = 0;
  readonly #frame: Frame<Conn> = { scope: this, depth: 0 };
  readonly #context: ScopeContext<Conn>;

  constructor(label: string, context: ScopeContext<Conn>) {
    this.label = label;
    this.#context = context;
  }

  /** True once release() was called: later database calls in this scope throw ScopeReleasedError. */
  get released(): boolean {
    return this.releaseReason !== undefined;
  }

  /** True while the scope holds its connection or is checking it out. */
  get hasConnection(): boolean {
    return this.conn !== undefined || this.#checkingOut !== undefined;
  }

  /** As a Waiter: release() ends the wait with ScopeReleasedError. */
  onLeave(leave: (error: Error) => void): () => void {
    const reason = this.releaseReason;
    if (reason) {
      queueMicrotask(() => leave(new ScopeReleasedError(reason)));
      return () => {};
    }
    this.#waits ??= new Set();
    this.#waits.add(leave);
    return () => this.#waits?.delete(leave);
  }

  /** Runs fn (and everything it awaits) inside this scope. Can be called again for the same request. */
  run<T>(fn: () => T): T {
    const frames = this.#context.frames;
    // Already inside (a later framework hook re-entering): no new frame needed.
    return frames.getStore() === this.#frame ? fn() : frames.run(this.#frame, fn);
  }

  /** Turns the request's own transaction on or off, until it has begun. */
  transact(on: boolean): void {
    setRequestTransaction(this.#context, this, this.#frame, on);
  }

  /** Ends the request's own transaction, if on, for a response of `status`. */
  endTransaction(status: number): Promise<void> {
    return endRequestTransaction(this.#context, this, this.#frame, status);
  }

  /** Checks the connection out now (eager checkout). PoolTimeoutError when none is free in time. */
  async connect(): Promise<void> {
    await this.track(() => this.connection());
  }

  /** The scope's connection, checked out on first use. Concurrent callers share one checkout. */
  connection(): Promise<Conn> {
    if (this.conn !== undefined) return Promise.resolve(this.conn);
    this.#checkingOut ??= this.#checkOut();
    return this.#checkingOut;
  }

  /**
   * Runs `use` on the scope's connection (checked out on first use) as a call in flight:
   * release() waits for it.
   */
  async use<R>(use: (conn: Conn) => R | Promise<R>): Promise<R> {
    if (this.releaseReason) throw new ScopeReleasedError(this.releaseReason);
    if (this.stream !== undefined) throw streamOpenError();
    if (this.beginRequestTransaction !== undefined) await this.beginRequestTransaction();
    this.#active++;
    let conn: Conn | undefined;
    try {
      conn = this.conn ?? (await this.connection());
      return await use(conn);
    } catch (error) {
      throw conn === undefined ? error : this.#context.pool.failure(conn, error);
    } finally {
      this.#leave();
    }
  }

  /** Runs `call` as a call in flight of this scope: release() waits for it. */
  async track<R>(call: () => R | Promise<R>): Promise<R> {
    if (this.releaseReason) throw new ScopeReleasedError(this.releaseReason);
    this.#active++;
    try {
      return await call();
    } finally {
      this.#leave();
    }
  }

  #leave(): void {
    this.#active--;
    if (this.#active === 0) for (const resolve of this.#whenIdle.splice(0)) resolve();
  }

  /**
   * Ends the scope: waits for the calls in flight, rolls back a transaction left open, returns
   * the connection exactly once, and refuses the request's later database calls. Safe to call
   * any number of times, at any moment. Never rejects.
   */
  release(reason: ReleaseReason = 'done'): Promise<void> {
    this.#releasing ??= this.#startRelease(reason);
    return this.#releasing;
  }

  /** release() for a caller that does not wait for it (a 'close' listener). It never fails. */
  releaseSoon(reason: ReleaseReason): void {
    this.#releasing ??= this.#startRelease(reason);
  }

  #startRelease(reason: ReleaseReason): Promise<void> {
    this.releaseReason = reason;
    if (this.#waits?.size) {
      const error = new ScopeReleasedError(reason);
      for (const leave of this.#waits) leave(error);
    }
    return this.checkIn().then(
      () => {},
      (error: unknown) => {
        this.#context.logger.error('db-hooks: could not return a connection to the pool:', error);
      },
    );
  }

  /**
   * Waits for the calls in flight, then returns the connection to the pool (once), rolling back
   * a transaction left open; a connection that cannot roll back is closed instead. Resolves once
   * the pool has it back, reset if the request changed its session state. False if the scope
   * held no connection.
   */
  async checkIn(): Promise<boolean> {
    // An open stream ends first: its loop's next step throws why.
    await this.stream?.close(new ScopeReleasedError(this.releaseReason ?? 'done'));
    while (this.#active > 0) await new Promise<void>((resolve) => this.#whenIdle.push(resolve));
    const conn = this.conn;
    if (conn === undefined) return false;
    const inTransaction = this.depth > 0;
    this.conn = undefined;
    this.depth = 0;
    this.commitHooks = undefined; // rolled back below: they never run
    this.#reportReturn();
    const { driver, pool } = this.#context;
    let discard = false;
    if (inTransaction && !driver.isBroken(conn)) {
      await Promise.resolve(driver.rollback(conn)).catch(() => {
        discard = true;
      });
    }
    const resetting = pool.checkIn(conn, discard);
    if (resetting !== undefined) await resetting; // an await of nothing still costs a promise
    return true;
  }

  async #checkOut(): Promise<Conn> {
    // For leak detection, taken now: once the checkout completes, a handler that is not an
    // async function has left no frame on the stack.
    if (this.#context.leakDetectionThresholdMillis > 0) {
      this.#checkedOutAt = new Error('checked out here');
    }
    try {
      const conn = await this.#context.pool.checkOut(this);
      this.conn = conn; // released meanwhile: release() returns it once we are done
      this.#watchForLeak();
      if (this.releaseReason) throw new ScopeReleasedError(this.releaseReason);
      return conn;
    } finally {
      this.#checkingOut = undefined;
    }
  }

  #watchForLeak(): void {
    const { leakDetectionThresholdMillis: threshold, logger } = this.#context;
    if (threshold <= 0) return;
    this.#leakReportedAt = 0;
    this.#leakTimer = setTimeout(() => {
      this.#leakReportedAt = Date.now();
      const stack = this.#checkedOutAt?.stack?.split('\n').slice(1).join('\n');
      logger.warn(
        `db-hooks: ${nameInWarnings(this.label)} has held a database connection for more than ` +
          `${threshold} ms; it may have leaked. It was checked out at:\n${stack}`,
      );
    }, threshold);
    this.#leakTimer.unref();
  }

  #reportReturn(): void {
    clearTimeout(this.#leakTimer);
    if (this.#leakReportedAt > 0) {
      const late = Date.now() - this.#leakReportedAt + this.#context.leakDetectionThresholdMillis;
      this.#context.logger.warn(
        `db-hooks: ${nameInWarnings(this.label)} returned its database connection after ` +
          `${late} ms (reported above as a possible leak).`,
      );
    }
  }
}

/**
 * A scope's label as warnings name it: 'GET /users/1', without the query string (it may hold
 * tokens) or a Web request's origin.
 */
function nameInWarnings(label: string): string {
  const query = label.indexOf('?');
  const name = query === -1 ? label : label.slice(0, query);
  return name.replace(/ \w+:\/\/[^/]*/, ' ');
}
