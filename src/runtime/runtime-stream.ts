/**
 * db-hooks runtime: db.stream(), a query's rows read as the loop asks for them, on the request's
 * connection: a PostgreSQL cursor, SQLite's iterate(), MySQL's streamed result. It opens at the
 * first row asked for, and the statement is closed when the loop ends, breaks or throws, and by
 * the release when the request ends first (its client left): an open cursor would hold the
 * connection and the query on the server, an open SQLite statement would keep the WAL from
 * being checkpointed. Outside a request the stream borrows a connection for its whole length.
 *
 * While it is open the connection is the stream's: the request's other statements are refused
 * at once (ConnectionStateError) rather than wait, since the loop may be what they wait in.
 */
import type { Driver, Params, RowCursor } from './runtime-driver.js';
import { ConnectionStateError, PoolClosedError, ScopeReleasedError } from './runtime-errors.js';
import type { Scope } from './runtime-scope.js';

export interface StreamOptions {
  /**
   * Rows fetched at a time: a round trip to the server each (PostgreSQL), or rows read in one
   * go (SQLite). Default 100.
   */
  batchSize?: number;
}

/** A statement of the request that met its open stream. */
export function streamOpenError(): ConnectionStateError {
  return new ConnectionStateError(
    'A database call was made while a db.stream() of the same request was open. Its ' +
      'connection runs one statement at a time, and the stream holds it until its loop ends: ' +
      'end or break the loop first, read the rows with db.query() if they are few, or run the ' +
      "call in db.detached(fn) (its own connection, outside the request's transaction).",
  );
}

/** A cursor whose close() returns nothing to await. */
export interface SyncRowCursor extends RowCursor {
  close(): void;
}

/** A cursor over rows a synchronous iterator yields (SQLite's iterate()). */
export function iteratorCursor(rows: Iterator<unknown>, batchSize: number): SyncRowCursor {
  let done = false;
  let closed = false;
  return {
    read() {
      // Closed under the loop: only closePool() does that, past its timeout, with the connection.
      if (closed) throw new PoolClosedError();
      const batch: unknown[] = [];
      while (!done && batch.length < batchSize) {
        const next = rows.next();
        if (next.done) done = true;
        else batch.push(next.value);
      }
      return batch;
    },
    close() {
      // An open statement keeps its read snapshot, and so the WAL, until it ends.
      if (!done) rows.return?.();
      done = closed = true;
    },
  };
}

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * What db.stream() returns: `for await (const row of db.stream(sql, params))`. Reading it is
 * what runs the statement; a loop's end, break or throw closes it (return()).
 */
export class RowStream<Row> implements AsyncIterableIterator<Row, undefined> {
  readonly #driver: Driver<unknown>;
  readonly #sql: string;
  readonly #params: Params | undefined;
  readonly #batchSize: number;
  /** The request's scope; or, outside a request, how to make one for the stream alone. */
  readonly #requestScope: Scope<unknown> | undefined;
  readonly #ownScope: () => Scope<unknown>;
  #scope: Scope<unknown> | undefined;
  #cursor: RowCursor | undefined;
  #rows: unknown[] = [];
  #index = 0;
  #fetching: Promise<void> | undefined;
  #closed = false;
  #shutting: Promise<void> | undefined;
  /** Why it was closed from outside (the release): the loop's next step throws it. */
  #reason: Error | undefined;

  constructor(
    driver: Driver<unknown>,
    scope: Scope<unknown> | undefined,
    ownScope: () => Scope<unknown>,
    sql: string,
    params: Params | undefined,
    options: StreamOptions = {},
  ) {
    const { batchSize = 100 } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new TypeError(
        `db.stream(): batchSize must be a whole number, 1 or more (got ${batchSize}).`,
      );
    }
    this.#driver = driver;
    this.#requestScope = scope;
    this.#ownScope = ownScope;
    this.#sql = sql;
    this.#params = params;
    this.#batchSize = batchSize;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Row, undefined>> {
    while (this.#index >= this.#rows.length) {
      if (this.#closed) {
        if (this.#reason !== undefined) throw this.#reason;
        return DONE;
      }
      this.#fetching ??= this.#fetch().finally(() => {
        this.#fetching = undefined;
      });
      await this.#fetching;
    }
    return { done: false, value: this.#rows[this.#index++] as Row };
  }

  /** Closes the statement early: what a loop's break or throw calls. */
  async return(): Promise<IteratorResult<Row, undefined>> {
    await this.close();
    return DONE;
  }

  /**
   * Closes the statement (after a read in flight), once; the connection is the request's again,
   * or goes back to the pool outside a request. With a `reason` (the release's), the loop's
   * next step throws it instead of ending as if all rows were read.
   */
  close(reason?: Error): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#reason = reason;
      const fetching = this.#fetching ?? Promise.resolve();
      this.#shutting = fetching.catch(() => {}).then(() => this.#shut());
    }
    return this.#shutting ?? Promise.resolve();
  }

  async #fetch(): Promise<void> {
    try {
      this.#cursor ??= await this.#open();
      const cursor = this.#cursor;
      const rows = await this.#scope!.track(() => cursor.read());
      if (this.#closed) return; // close() was called meanwhile: it shuts once this read is done
      this.#rows = rows;
      this.#index = 0;
      if (rows.length > 0) return;
      this.#closed = true;
      this.#shutting = this.#shut();
      await this.#shutting; // the last step resolves once the connection is free
    } catch (error) {
      if (!this.#closed) {
        this.#closed = true;
        this.#shutting = this.#shut();
        await this.#shutting.catch(() => {});
      }
      throw error;
    }
  }

  async #open(): Promise<RowCursor> {
    const scope = this.#requestScope ?? this.#ownScope();
    this.#scope = scope;
    if (scope.releaseReason) throw new ScopeReleasedError(scope.releaseReason);
    if (scope.stream !== undefined) throw streamOpenError();
    scope.stream = this; // from now on: a second stream started meanwhile is refused
    await scope.beginRequestTransaction?.();
    scope.holdsConnection = true; // after a db.close() too, as a transaction does
    return scope.track(async () => {
      const conn = scope.conn ?? (await scope.connection());
      return this.#driver.stream(conn, this.#sql, this.#params, this.#batchSize);
    });
  }

  /** Closes the cursor, frees the connection for the request's other statements. */
  async #shut(): Promise<void> {
    this.#rows = [];
    this.#index = 0;
    const scope = this.#scope;
    try {
      await this.#cursor?.close();
    } finally {
      if (scope?.stream === this) scope.stream = undefined;
      // A connection the close had to cut (MySQL) goes back; the next statement gets another.
      const conn = scope?.conn;
      if (scope !== undefined && scope !== this.#requestScope) await scope.release();
      else if (conn !== undefined && scope?.released === false && scope.depth === 0) {
        if (this.#driver.isBroken(conn)) await scope.checkIn();
      }
    }
  }
}
