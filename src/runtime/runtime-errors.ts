/**
 * db-hooks runtime: the errors it throws. Each has a stable `code`; those a client may see say
 * nothing about the server (the detail goes to the log), and frameworks answer them with their
 * `status`.
 */

/** Why a scope was released; it decides what a later database call of that request is told. */
export type ReleaseReason = 'done' | 'client-gone';

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
 * The database cannot serve this request now but may soon: the pool is exhausted or closing, or
 * the server is unreachable. Its message is safe to show a client, and frameworks answer 503:
 * Express, Koa and Fastify read `status`/`statusCode`/`expose`, Hono calls `getResponse()`.
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

/** No connection (or, on SQLite, no turn to write) became free in time. */
export class PoolTimeoutError extends ServiceUnavailableError {
  constructor(timeoutMillis: number) {
    super(
      'POOL_TIMEOUT',
      `No database connection became free within ${timeoutMillis} ms. Try again shortly.`,
    );
    this.name = 'PoolTimeoutError';
  }
}

/** closePool() is draining the pool: the server is shutting down. */
export class PoolClosedError extends ServiceUnavailableError {
  constructor(options?: { cause?: unknown }) {
    super('POOL_CLOSED', 'The server is shutting down. Try again shortly.', options);
    this.name = 'PoolClosedError';
  }
}

/**
 * The database server could not be reached, a new connection could not be set up, or the
 * connection broke (a restart, a killed backend). A retry can succeed: the pool replaces broken
 * connections by itself.
 */
export class DatabaseUnavailableError extends ServiceUnavailableError {
  constructor(options?: { cause?: unknown }) {
    super('DATABASE_UNAVAILABLE', 'The database is unavailable. Try again shortly.', options);
    this.name = 'DatabaseUnavailableError';
  }
}

/** connect(), close() or atomic() was called in a state where it makes no sense (as in peewee). */
export class ConnectionStateError extends DbHooksError {
  constructor(message: string) {
    super('CONNECTION_STATE', message);
    this.name = 'ConnectionStateError';
  }
}

/**
 * A transaction in which a statement failed (its error caught inside db.atomic()) was asked to
 * commit: the database rolled it back instead, as PostgreSQL does without an error.
 */
export class TransactionFailedError extends DbHooksError {
  constructor() {
    super(
      'TRANSACTION_FAILED',
      'A statement inside db.atomic() failed and its error was caught, so the database rolled ' +
        'the whole transaction back instead of committing it. Run the statement in a nested ' +
        'db.atomic() (a savepoint) to carry on after its failure.',
    );
    this.name = 'TransactionFailedError';
  }
}

/**
 * The request's own transaction (the adapters' `atomic`) could not commit, after its handler
 * had succeeded: frameworks answer 500 with this message, safe to show; the cause goes to the log.
 */
export class CommitFailedError extends DbHooksError {
  readonly status = 500;
  readonly statusCode = 500;

  constructor(options?: { cause?: unknown }) {
    super('COMMIT_FAILED', "The request's transaction could not commit.", options);
    this.name = 'CommitFailedError';
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

/** True for the refusal of a statement whose client went away: nobody is left to answer. */
export function isGoneClient(error: unknown): boolean {
  return error instanceof ScopeReleasedError && error.reason === 'client-gone';
}
