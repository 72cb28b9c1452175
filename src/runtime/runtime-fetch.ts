/**
 * db-hooks runtime: the scope of a Web `Request` (the fetch target, Hono off Node): released
 * when the response body has been read or cancelled, at once for a response with no body or a
 * handler that threw, or when the request's signal aborts (the client went away).
 */
import { createScope, type Database } from './runtime-database.js';
import type { RequestSettings } from './runtime-options.js';
import type { RequestScope } from './runtime-scope.js';

const kScopes = Symbol('db-hooks scopes');
type ScopedRequest = Request & { [kScopes]?: Map<Database, RequestScope> };

/**
 * Runs `handler` inside the request's scope (checking the connection out first for eager
 * checkout) and hands the scope's release over to the response. A request that already has a
 * scope of this database just runs `handler`.
 */
export async function respondInScope(
  request: Request,
  settings: RequestSettings,
  handler: () => Response | Promise<Response>,
): Promise<Response> {
  const scope = scopeForFetch(settings.database, request);
  if (scope === undefined) {
    // A second registration, on a route, may turn the request's transaction on or off.
    const first = (request as ScopedRequest)[kScopes]?.get(settings.database);
    if (settings.atomic !== undefined) first?.transact(settings.atomic);
    return handler();
  }
  let response: Response;
  try {
    if (settings.atomic) scope.transact(true);
    if (settings.checkout === 'eager') await scope.connect();
    response = await scope.run(handler);
    // Before the response is handed to the server: a body still being produced runs its
    // statements after the commit, each on its own.
    await scope.endTransaction(response.status);
  } catch (error) {
    await scope.release(); // rolls back a transaction still open
    throw error;
  }
  if (response.body === null) {
    await scope.release();
    return response;
  }
  // The body may still be produced from the database while the server sends it: keep the
  // connection until it has been read or cancelled.
  return new Response(releaseWhenRead(response.body, scope), response);
}

/** Marks the request as failed: its own transaction, if any, rolls back whatever the status. */
export function failWebRequest(request: Request): void {
  for (const scope of (request as ScopedRequest)[kScopes]?.values() ?? []) {
    if (scope.requestTransaction) scope.requestTransaction.failed = true;
  }
}

/** Opens the request's scope of `database`; undefined when it has one already. */
export function scopeForFetch(database: Database, request: Request): RequestScope | undefined {
  const scoped = request as ScopedRequest;
  if (scoped[kScopes]?.has(database)) return undefined;
  const scope = createScope(database, `${request.method} ${request.url}`);
  scoped[kScopes] ??= new Map();
  scoped[kScopes].set(database, scope);
  const gone = () => scope.releaseSoon('client-gone');
  if (request.signal.aborted) gone();
  else request.signal.addEventListener('abort', gone, { once: true });
  return scope;
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
