/**
 * db-hooks runtime: waiting in line, first come first served, each wait with a deadline. The
 * pool's checkouts wait here for a free connection, and SQLite's writers for their turn to write.
 */

/**
 * Who waits, when the wait can end early: a request's scope, whose release ends its waits. A
 * function the scope holds rather than an AbortSignal: under load most requests wait for a
 * connection, and a signal's listener and abort() would cost more than the rest of the wait.
 */
export interface Waiter {
  /**
   * Calls `leave` (never synchronously) with the error to reject with if the waiter goes away
   * first; returns what stops that.
   */
  onLeave(leave: (error: Error) => void): () => void;
}

/** A FIFO of waiters, each with a deadline: for a free connection, and for SQLite's write turn. */
export class WaitQueue {
  readonly #waiters: ((error?: Error) => void)[] = [];

  get length(): number {
    return this.#waiters.length;
  }

  /**
   * Resolves when handOff() picks this waiter. Rejects with timeoutError() at the deadline, or
   * with the waiter's error when it goes away first (the request's scope was released).
   */
  wait(timeoutMillis: number, timeoutError: () => Error, waiter?: Waiter): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const settle = (error?: Error) => {
        clearTimeout(timer);
        stopWatching?.();
        if (error === undefined) resolve();
        else reject(error);
      };
      const leave = (error: Error) => {
        const index = this.#waiters.indexOf(settle);
        if (index !== -1) this.#waiters.splice(index, 1);
        settle(error);
      };
      const timer = setTimeout(() => leave(timeoutError()), timeoutMillis);
      this.#waiters.push(settle);
      const stopWatching = waiter?.onLeave(leave);
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
 * A lock held by one at a time, handed to the longest waiter when its holder gives it up (SQLite's
 * turn to write). A wait past `timeoutMillis` rejects with timeoutError().
 */
export class TurnLock {
  readonly #timeoutMillis: number;
  readonly #timeoutError: () => Error;
  #held = false;
  readonly #waiting = new WaitQueue();

  constructor(timeoutMillis: number, timeoutError: () => Error) {
    this.#timeoutMillis = timeoutMillis;
    this.#timeoutError = timeoutError;
  }

  get held(): boolean {
    return this.#held;
  }

  /** Waits for the turn; resolves with the function that gives it up (once). */
  async take(waiter?: Waiter): Promise<() => void> {
    // Handed over by the holder's release, still held.
    if (this.#held) await this.#waiting.wait(this.#timeoutMillis, this.#timeoutError, waiter);
    this.#held = true;
    let mine = true;
    return () => {
      if (!mine) return;
      mine = false;
      if (!this.#waiting.handOff()) this.#held = false;
    };
  }

  rejectWaiting(error: Error): void {
    this.#waiting.rejectAll(error);
  }

  /** Runs `work` once it has the turn, and gives the turn up after. */
  async whenFree<T>(work: () => T): Promise<T> {
    const release = await this.take();
    try {
      return work();
    } finally {
      release();
    }
  }
}
