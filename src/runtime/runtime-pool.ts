/**
 * db-hooks runtime: the pool's accounting. At most `max` connections are checked out at once;
 * a checkout past that waits in line, up to a deadline, for one to come back. A connection comes
 * back as a new one would be: one that a statement left session state on is reset before its
 * slot is free again. closePool() drains the pool and closes it; the next checkout opens it
 * again. The driver keeps the connections themselves (pg's Pool, or SQLite's idle list).
 */
import { PoolClosedError, PoolTimeoutError } from './runtime-errors.js';
import { type Waiter, WaitQueue } from './runtime-wait.js';

/** Where warnings and the operator's side of errors go (console by default). */
export type Logger = Pick<Console, 'warn' | 'error'>;

let frameworkLogger: Logger | undefined;

/**
 * The logger of a database whose options set none: the console, until an adapter whose
 * framework has a logger of its own (Fastify's) hands it over with useFrameworkLogger().
 */
export const defaultLogger: Logger = {
  warn: (...args) => (frameworkLogger ?? console).warn(...args),
  error: (...args) => (frameworkLogger ?? console).error(...args),
};

/** Sends the log lines of every database without a `logger` option to `logger` from now on. */
export function useFrameworkLogger(logger: Logger): void {
  frameworkLogger = logger;
}

export interface PoolOptions {
  /** Most connections checked out at once. Default 10. */
  max?: number;
  /** How long a checkout waits for a free connection before PoolTimeoutError. Default 5000. */
  acquireTimeoutMillis?: number;
  /** closePool() waits this long for connections in use, then closes them anyway. Default 5000. */
  closeTimeoutMillis?: number;
  /**
   * How long resetting a returned connection's session state may take (PostgreSQL: DISCARD ALL,
   * then onConnect again) before the connection is closed instead. Default 5000.
   */
  resetTimeoutMillis?: number;
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
  /** True when a statement changed the connection's session state (see runtime-session). */
  changedSession(conn: Conn): boolean;
  /**
   * Makes such a connection as a new one would be; a rejection closes it instead. A driver
   * without it (SQLite) has such a connection closed, and the next checkout opens a new one.
   */
  resetSession?(conn: Conn): Promise<void>;
  /** Closes every connection; a later checkOut() opens new ones. */
  closeAll(): void | Promise<void>;
  size(): { total: number; idle: number };
}

export class Pool<Conn> {
  readonly #source: ConnectionSource<Conn>;
  readonly #max: number;
  readonly #acquireTimeoutMillis: number;
  readonly #closeTimeoutMillis: number;
  readonly #resetTimeoutMillis: number;
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
  /** Resets in progress, each with the function that gives up on it (the drain does). */
  readonly #resetting = new Set<() => void>();

  constructor(source: ConnectionSource<Conn>, options: PoolOptions, logger: Logger) {
    this.#source = source;
    this.#max = options.max ?? 10;
    this.#acquireTimeoutMillis = options.acquireTimeoutMillis ?? 5000;
    this.#closeTimeoutMillis = options.closeTimeoutMillis ?? 5000;
    this.#resetTimeoutMillis = options.resetTimeoutMillis ?? 5000;
    this.#logger = logger;
  }

  /** A connection for the caller alone, until checkIn(). The waiter may end a wait for one early. */
  async checkOut(waiter?: Waiter): Promise<Conn> {
    if (this.#draining !== undefined) throw new PoolClosedError();
    const generation = this.#generation;
    if (this.#slotsTaken < this.#max) this.#slotsTaken++;
    // Otherwise checkIn() hands its slot over, still counted.
    else await this.#queue.wait(this.#acquireTimeoutMillis, () => this.#timedOut(), waiter);
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

  /**
   * Returns a connection (once; later calls are ignored) and its slot to the next in line. One
   * whose session state a statement changed is reset first, or closed when it cannot be, and
   * its slot is free only after that: the next request never gets it half reset. Undefined
   * when nothing was left to reset (the slot is free already); else resolves once it is back.
   * Never rejects.
   */
  checkIn(conn: Conn, discard = false): Promise<void> | undefined {
    if (!this.#checkedOut.delete(conn)) return undefined; // the drain closed it already
    const source = this.#source;
    let close = discard || source.isBroken(conn);
    if (!close && source.changedSession(conn)) {
      if (source.resetSession) return this.#resetThenReturn(conn, source.resetSession(conn));
      close = true; // a new connection is the reset
    }
    source.checkIn(conn, close);
    this.#freeSlot();
    return undefined;
  }

  /** What to throw for a call that failed on conn: close() may have cut it off. */
  failure(conn: Conn, error: unknown): unknown {
    return this.#closedInUse.has(conn as object) ? new PoolClosedError({ cause: error }) : error;
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
    // Past the timeout: close the connections still in use (their statements fail) and those
    // still being reset.
    for (const stop of this.#resetting) stop();
    for (const conn of this.#checkedOut) {
      this.#closedInUse.add(conn as object);
      this.#source.checkIn(conn, true);
    }
    this.#checkedOut.clear();
    this.#slotsTaken = 0;
    this.#generation++;
    await this.#source.closeAll();
  }

  async #resetThenReturn(conn: Conn, reset: Promise<void>): Promise<void> {
    const generation = this.#generation;
    const failure = await this.#bounded(reset);
    if (failure !== undefined) {
      this.#logger.error(
        `db-hooks: could not reset the session state a request left on its connection ` +
          `(${failure}), so the connection was closed instead of reused.`,
      );
    }
    // A drain that gave up waiting has closed the pool meanwhile: this one goes too.
    const sameGeneration = generation === this.#generation;
    this.#source.checkIn(conn, failure !== undefined || !sameGeneration);
    if (sameGeneration) this.#freeSlot();
  }

  /**
   * Waits for a reset, but not past resetTimeoutMillis, nor past a drain that stopped waiting.
   * Undefined when it completed; else why not.
   */
  async #bounded(reset: Promise<void>): Promise<string | undefined> {
    let stop!: (why: string) => void;
    const stopped = new Promise<string>((resolve) => {
      stop = resolve;
    });
    const cutOff = () => stop('closePool() stopped waiting for it');
    const timer = setTimeout(
      () => stop(`it took longer than resetTimeoutMillis, ${this.#resetTimeoutMillis} ms`),
      this.#resetTimeoutMillis,
    );
    this.#resetting.add(cutOff);
    const completed = reset.then(
      () => undefined,
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    try {
      return await Promise.race([completed, stopped]);
    } finally {
      clearTimeout(timer);
      this.#resetting.delete(cutOff);
    }
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
