/**
 * db-hooks runtime: the pool's accounting. At most `max` connections are checked out at once;
 * a checkout past that waits in line, up to a deadline, for one to come back. closePool() drains
 * the pool and closes it; the next checkout opens it again. The driver keeps the connections
 * themselves (pg's Pool, or SQLite's idle list).
 */
import { PoolClosedError, PoolTimeoutError } from './runtime-errors.js';

/** Where warnings and the operator's side of errors go (console by default). */
export type Logger = Pick<Console, 'warn' | 'error'>;

export interface PoolOptions {
  /** Most connections checked out at once. Default 10. */
  max?: number;
  /** How long a checkout waits for a free connection before PoolTimeoutError. Default 5000. */
  acquireTimeoutMillis?: number;
  /** closePool() waits this long for connections in use, then closes them anyway. Default 5000. */
  closeTimeoutMillis?: number;
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

/** What the pool asks of a driver. */
export interface ConnectionSource<Conn> {
  /** An idle connection or a new one. Called only while fewer than `max` are checked out. */
  checkOut(): Conn | Promise<Conn>;
  /** Takes a connection back: kept for reuse, or closed when `discard`. */
  checkIn(conn: Conn, discard: boolean): void;
  /** True when the connection can no longer be used (it is discarded on check-in). */
  isBroken(conn: Conn): boolean;
  /** Closes every connection; a later checkOut() opens new ones. */
  closeAll(): void | Promise<void>;
  size(): { total: number; idle: number };
}

/** A FIFO of waiters, each with a deadline: for a free connection, and for SQLite's write turn. */
export class WaitQueue {
  readonly #waiters: ((error?: Error) => void)[] = [];

  get length(): number {
    return this.#waiters.length;
  }

  /**
   * Resolves when handOff() picks this waiter. Rejects with timeoutError() at the deadline, or
   * with the signal's reason when it aborts first (the request's scope was released).
   */
  wait(timeoutMillis: number, timeoutError: () => Error, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<void>((resolve, reject) => {
      const settle = (error?: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', abort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const leave = (error: Error) => {
        const index = this.#waiters.indexOf(settle);
        if (index !== -1) this.#waiters.splice(index, 1);
        settle(error);
      };
      // Scopes abort with the ScopeReleasedError their waits reject with.
      const abort = () => leave(signal?.reason as Error);
      const timer = setTimeout(() => leave(timeoutError()), timeoutMillis);
      signal?.addEventListener('abort', abort, { once: true });
      this.#waiters.push(settle);
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

export class Pool<Conn> {
  readonly #source: ConnectionSource<Conn>;
  readonly #max: number;
  readonly #acquireTimeoutMillis: number;
  readonly #closeTimeoutMillis: number;
  readonly #logger: Logger;
  readonly #checkedOut = new Set<Conn>();
  /** Checked out or being opened: at most `max`. */
  #slotsTaken = 0;
  readonly #queue = new WaitQueue();
  #draining: Promise<void> | undefined;
  #allReturned: (() => void) | undefined;
  /** Counts drains, so a checkout that outlived one cannot count in the reopened pool. */
  #generation = 0;
  /** Connections the drain closed while in use: their statements' failures say so. */
  readonly #closedInUse = new WeakSet<object>();

  constructor(source: ConnectionSource<Conn>, options: PoolOptions, logger: Logger) {
    this.#source = source;
    this.#max = options.max ?? 10;
    this.#acquireTimeoutMillis = options.acquireTimeoutMillis ?? 5000;
    this.#closeTimeoutMillis = options.closeTimeoutMillis ?? 5000;
    this.#logger = logger;
  }

  /** A connection for the caller alone, until checkIn(). `signal` ends a wait for one early. */
  async checkOut(signal?: AbortSignal): Promise<Conn> {
    if (this.#draining !== undefined) throw new PoolClosedError();
    const generation = this.#generation;
    if (this.#slotsTaken < this.#max) this.#slotsTaken++;
    // Otherwise checkIn() hands its slot over, still counted.
    else await this.#queue.wait(this.#acquireTimeoutMillis, () => this.#timedOut(), signal);
    let conn: Conn;
    try {
      conn = await this.#source.checkOut();
    } catch (error) {
      if (generation === this.#generation) this.#freeSlot();
      throw error;
    }
    if (this.#draining !== undefined || generation !== this.#generation) {
      this.#source.checkIn(conn, generation !== this.#generation);
      if (generation === this.#generation) this.#freeSlot();
      throw new PoolClosedError();
    }
    this.#checkedOut.add(conn);
    return conn;
  }

  /** Returns a connection (once; later calls are ignored) and its slot to the next in line. */
  checkIn(conn: Conn, discard = false): void {
    if (!this.#checkedOut.delete(conn)) return; // the drain closed it already
    this.#source.checkIn(conn, discard || this.#source.isBroken(conn));
    this.#freeSlot();
  }

  /** Runs a call on a checked-out connection; one cut off because close() closed it says so. */
  async use<R>(conn: Conn, call: () => R | Promise<R>): Promise<R> {
    try {
      return await call();
    } catch (error) {
      throw this.#closedInUse.has(conn as object) ? new PoolClosedError({ cause: error }) : error;
    }
  }

  stats(): PoolStats {
    return { ...this.#source.size(), inUse: this.#slotsTaken, waiting: this.#queue.length };
  }

  /**
   * Refuses new checkouts, waits for the connections in use to come back (up to
   * closeTimeoutMillis), then closes every connection. The next checkout opens the pool again.
   */
  close(): Promise<void> {
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
    return this.#draining;
  }

  async #drain(): Promise<void> {
    this.#queue.rejectAll(new PoolClosedError());
    if (this.#slotsTaken > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#allReturned = resolve;
        timer = setTimeout(resolve, this.#closeTimeoutMillis);
      });
      clearTimeout(timer);
      this.#allReturned = undefined;
    }
    // Past the timeout: close the connections still in use; their statements fail.
    for (const conn of this.#checkedOut) {
      this.#closedInUse.add(conn as object);
      this.#source.checkIn(conn, true);
    }
    this.#checkedOut.clear();
    this.#slotsTaken = 0;
    this.#generation++;
    await this.#source.closeAll();
  }

  #freeSlot(): void {
    if (this.#queue.handOff()) return; // the slot goes straight to the next in line
    this.#slotsTaken--;
    if (this.#slotsTaken === 0) this.#allReturned?.();
  }

  #timedOut(): Error {
    this.#logger.error(
      `db-hooks: no connection became free within ${this.#acquireTimeoutMillis} ms: all ` +
        `${this.#max} are in use. Make sure every request releases its connection, or raise ` +
        'max or acquireTimeoutMillis in index.',
    );
    return new PoolTimeoutError(this.#acquireTimeoutMillis);
  }
}
