/**
 * db-hooks runtime: a request's own transaction (the adapters' `atomic` option, as Django's
 * ATOMIC_REQUESTS). It begins at the request's first statement, so a request that never queries
 * opens nothing; the request's db.atomic() blocks are savepoints in it; and it ends when the
 * response does, before the response is let out to the client (runtime-node, runtime-fetch;
 * on Fastify and Hono before the status line, so that a failed commit can still answer 500: a
 * body streamed after that runs its statements outside the transaction).
 * It rolls back when:
 *
 * - the handler failed: an error the adapter saw (thrown in Koa, Hono, node:http, fetch;
 *   Fastify's onError; an error passed on to Express's skipGoneClients());
 * - or the response status is 500 or more (also an error the handler caught and answered itself),
 *   unless the handler called db.setRollback(false);
 * - or the handler called db.setRollback(true);
 * - or the client left before the response was complete (the release rolls back).
 *
 * Otherwise it commits, and a commit that fails turns the response into a 500 (or cuts it off,
 * if its headers were out already): a client never sees success for a failed commit.
 */

import type { Frame, Scope, ScopeContext } from './runtime-scope.js';
import { begin, end } from './runtime-transaction.js';

/** What decides how a request's transaction ends, besides the response status. */
export interface RequestTransaction {
  /** The handler failed: roll back whatever the status. */
  failed: boolean;
  /** db.setRollback(): true rolls back, false commits, whatever the status. */
  rollback: boolean | undefined;
  /** BEGIN, from the request's first statement until it completes. */
  beginning: Promise<void> | undefined;
}

/** Turns the request's transaction on or off; no change once it has begun. */
export function setRequestTransaction<Conn>(
  context: ScopeContext<Conn>,
  scope: Scope<Conn>,
  frame: Frame<Conn>,
  on: boolean,
): void {
  if (scope.released || scope.depth > 0) return;
  if (!on) {
    scope.requestTransaction = undefined;
    scope.beginRequestTransaction = undefined;
    scope.commitHooks = undefined;
    frame.depth = 0;
    return;
  }
  if (scope.requestTransaction !== undefined) return;
  const transaction: RequestTransaction = {
    failed: false,
    rollback: undefined,
    beginning: undefined,
  };
  scope.requestTransaction = transaction;
  // The request's code runs in its transaction from now on: db.onCommit() callbacks wait for
  // it, and db.atomic() makes savepoints.
  frame.depth = 1;
  scope.commitHooks = [[]];
  scope.beginRequestTransaction = () => {
    transaction.beginning ??= begin(context, scope).then(
      () => {
        scope.beginRequestTransaction = undefined;
      },
      (error: unknown) => {
        transaction.beginning = undefined; // the next statement tries again
        throw error;
      },
    );
    return transaction.beginning;
  };
}

/**
 * Ends the request's transaction, if it has one, by the rules above for a response of
 * `status`. Rejects when the commit fails, or with ScopeReleasedError when the client left
 * (the release rolled back).
 */
export async function endRequestTransaction<Conn>(
  context: ScopeContext<Conn>,
  scope: Scope<Conn>,
  frame: Frame<Conn>,
  status: number,
): Promise<void> {
  const transaction = scope.requestTransaction;
  if (transaction === undefined) return;
  scope.requestTransaction = undefined;
  scope.beginRequestTransaction = undefined;
  frame.depth = 0;
  const rollback = transaction.failed || (transaction.rollback ?? status >= 500);
  await transaction.beginning?.catch(() => {});
  if (scope.depth === 0) {
    // Never begun: nothing to end, but db.onCommit() callbacks follow the outcome all the same.
    const hooks = scope.commitHooks?.flat() ?? [];
    scope.commitHooks = undefined;
    if (!rollback && hooks.length > 0) context.afterCommit(hooks);
    return;
  }
  await end(context, scope, rollback ? 'rollback' : 'commit');
}
