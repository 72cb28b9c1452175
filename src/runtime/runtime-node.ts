/**
 * db-hooks runtime: the scope of a node:http request, for the adapters of frameworks on
 * node:http (Express, Fastify, Koa, Hono on @hono/node-server, NestJS, node:http itself, the
 * hooks target). The scope is released exactly once when the exchange is over: the response was
 * sent, or the client went away, before the adapter ran, during the handler, or while the
 * response waited behind earlier pipelined ones.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { createScope, type Database } from './runtime-database.js';
import { CommitFailedError, isGoneClient } from './runtime-errors.js';
import type { RequestSettings } from './runtime-options.js';
import type { Logger } from './runtime-pool.js';
import type { RequestScope } from './runtime-scope.js';

const kScopes = Symbol('db-hooks scopes');
type ScopedRequest = IncomingMessage & { [kScopes]?: Map<Database, RequestScope> };

/**
 * What every adapter does with a request: opens its scope, checks the connection out at once
 * for eager checkout, then runs `next` inside the scope. Resolves with the scope, or undefined
 * when the request already had one of this database (the adapter registered twice): the first
 * one covers it, and `next` just runs.
 *
 * Rejects with what eager checkout met (PoolTimeoutError, or ScopeReleasedError if the client
 * left meanwhile), or with what `next` threw or rejected with.
 */
export async function enterRequest(
  req: IncomingMessage,
  res: ServerResponse,
  settings: RequestSettings,
  next: () => unknown,
): Promise<RequestScope | undefined> {
  const scope = scopeForRequest(settings.database, req, res);
  if (scope === undefined) {
    // A second registration, on a route or router, may turn the request's transaction on or off.
    const first = findRequestScope(settings.database, req);
    if (first !== undefined && settings.atomic !== undefined) transact(first, res, settings);
    await next();
    return undefined;
  }
  if (settings.atomic) transact(scope, res, settings);
  if (settings.checkout === 'eager') await scope.connect();
  try {
    await scope.run(next);
  } catch (error) {
    failRequest(req);
    throw error;
  }
  return scope;
}

/**
 * Marks the request as failed, for adapters that see its error another way (Fastify's onError,
 * Express's error handlers): its own transaction, if any, rolls back whatever the status.
 */
export function failRequest(req: IncomingMessage): void {
  for (const scope of (req as ScopedRequest)[kScopes]?.values() ?? []) {
    if (scope.requestTransaction) scope.requestTransaction.failed = true;
  }
}

const ending = new WeakSet<ServerResponse>();

/**
 * Turns the request's own transaction on or off, and makes the response wait for its end: the
 * commit happens before the last bytes go out (all of them, for a body sent at once), so a
 * client never sees a complete success for a failed commit.
 */
function transact(scope: RequestScope, res: ServerResponse, settings: RequestSettings): void {
  scope.transact(settings.atomic === true);
  if (!settings.atomic || ending.has(res)) return;
  ending.add(res);
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  let endWith: Promise<unknown[] | undefined> | undefined;
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    if (endWith !== undefined) return this; // ending already, as a second end() would be
    endWith = scope.endTransaction(res.statusCode).then(
      () => args,
      (error: unknown) => failedCommit(res, error, settings.database.logger),
    );
    endWith = endWith.then((endArgs) => {
      if (endArgs) end(...endArgs);
      return endArgs;
    });
    return this;
  } as ServerResponse['end'];
}

/**
 * Ends the request's own transaction, if any, before the response is written: for frameworks
 * that write the status line before the body (Fastify, Hono's node server), so that a failed
 * commit can still answer 500. It then rejects with CommitFailedError (its message is safe to
 * show, the cause goes to the log); a client that left rolled back, and nothing is thrown.
 */
export async function endTransactionBeforeResponse(
  scope: RequestScope | undefined,
  status: number,
  logger: Logger,
): Promise<void> {
  try {
    await scope?.endTransaction(status);
  } catch (error) {
    if (isGoneClient(error)) return;
    logger.error("db-hooks: the request's transaction could not commit:", error);
    throw new CommitFailedError({ cause: error });
  }
}

/** What to end the response with after a failed commit: a 500, or nothing if it is cut off. */
function failedCommit(res: ServerResponse, error: unknown, logger: Logger): unknown[] | undefined {
  if (isGoneClient(error)) return undefined; // the release rolled back: nobody to answer
  logger.error("db-hooks: the request's transaction could not commit:", error);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return undefined;
  }
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.statusCode = 500;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  return ['Internal Server Error'];
}

/**
 * Opens the request's scope of `database`. The request's body events ('data', 'end') run inside
 * it too, so code that reads the body keeps the request's connection. Undefined when the request
 * has one already.
 */
export function scopeForRequest(
  database: Database,
  req: IncomingMessage,
  res: ServerResponse,
): RequestScope | undefined {
  const scoped = req as ScopedRequest;
  if (scoped[kScopes]?.has(database)) return undefined;
  const scope = createScope(database, `${req.method} ${req.url}`);
  scoped[kScopes] ??= new Map();
  scoped[kScopes].set(database, scope);
  releaseWhenOver(req, res, scope);
  if (hasBody(req)) runEventsInScope(req, scope);
  return scope;
}

/** The request's scope of `database`, once an adapter opened it. */
export function findRequestScope(
  database: Database,
  req: IncomingMessage,
): RequestScope | undefined {
  return (req as ScopedRequest)[kScopes]?.get(database);
}

function releaseWhenOver(req: IncomingMessage, res: ServerResponse, scope: RequestScope): void {
  const socket = req.socket;
  // The client left before the adapter ran (e.g. while an earlier middleware awaited).
  if (res.closed || socket.destroyed) {
    scope.releaseSoon('client-gone');
    return;
  }
  // Until Node 22's end of life (2027-04-30): a response queued behind earlier pipelined ones
  // has no socket yet and, on Node 22, gets neither 'finish' nor 'close' if the client hangs up
  // before its turn (Node 24 emits 'close'). The socket's own 'close' is the only sign.
  const queued = res.socket === null ? queuedOn(socket) : undefined;
  queued?.add(scope);
  // 'close', not 'finish': 'finish' comes only when the whole response was written, while
  // 'close' comes once for every response that got the connection, sent or cut off.
  res.on('close', () => {
    queued?.delete(scope);
    scope.releaseSoon(res.writableFinished ? 'done' : 'client-gone');
  });
}

/** Per connection, its requests whose responses wait behind earlier pipelined ones. */
const queuedOnSocket = new WeakMap<Socket, Set<RequestScope>>();

function queuedOn(socket: Socket): Set<RequestScope> {
  let queued = queuedOnSocket.get(socket);
  if (queued === undefined) {
    const scopes = new Set<RequestScope>();
    socket.on('close', () => {
      for (const scope of scopes) scope.releaseSoon('client-gone');
    });
    queuedOnSocket.set(socket, scopes);
    queued = scopes;
  }
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
 */
function runEventsInScope(req: IncomingMessage, scope: RequestScope): void {
  const emit = req.emit.bind(req);
  req.emit = (event: string | symbol, ...args: unknown[]) => scope.run(() => emit(event, ...args));
}
