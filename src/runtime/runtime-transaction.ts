/**
 * db-hooks runtime: db.atomic()'s two paths. A scope's outermost block is a transaction (BEGIN,
 * then COMMIT, or ROLLBACK when it throws); a nested block is a savepoint, so an inner failure
 * rolls back only the inner part.
 */
import { ScopeReleasedError } from './runtime-errors.js';
import type { Scope, ScopeContext } from './runtime-scope.js';

interface Ending<Conn> {
  commit(conn: Conn): unknown;
  rollback(conn: Conn): unknown;
}

export async function transaction<Conn, T>(
  context: ScopeContext<Conn>,
  scope: Scope<Conn>,
  fn: () => Promise<T>,
): Promise<T> {
  const { driver } = context;
  scope.depth = 1; // at once, so that a concurrent atomic() sees it
  try {
    await scope.track(async () => {
      // SQLite: the turn to write comes before the connection, so a request queued behind
      // another's transaction holds no connection meanwhile.
      const turn = scope.conn === undefined ? await driver.transactionTurn?.(scope) : undefined;
      try {
        await scope.use((conn) => driver.begin(conn, turn));
      } catch (error) {
        turn?.(); // never reached begin(), or begin() failed and gave it up already
        throw error;
      }
    });
  } catch (error) {
    scope.depth = 0;
    throw error;
  }
  return runThenEnd(context, scope, 1, fn, driver);
}

export async function savepoint<Conn, T>(
  context: ScopeContext<Conn>,
  scope: Scope<Conn>,
  fn: () => Promise<T>,
): Promise<T> {
  const depth = scope.depth;
  const name = `db_hooks_${depth}`;
  const run = (sql: string) => (conn: Conn) => context.driver.execute(conn, 'run', sql, undefined);
  scope.depth = depth + 1;
  try {
    await onHeldConnection(scope, run(`SAVEPOINT ${name}`));
  } catch (error) {
    scope.depth = depth;
    throw error;
  }
  return runThenEnd(context, scope, depth + 1, fn, {
    commit: run(`RELEASE SAVEPOINT ${name}`),
    rollback: async (conn) => {
      await run(`ROLLBACK TO SAVEPOINT ${name}`)(conn);
      await run(`RELEASE SAVEPOINT ${name}`)(conn);
    },
  });
}

/** Runs a block at `depth`, then commits it, or rolls it back when fn throws. */
async function runThenEnd<Conn, T>(
  context: ScopeContext<Conn>,
  scope: Scope<Conn>,
  depth: number,
  fn: () => Promise<T>,
  end: Ending<Conn>,
): Promise<T> {
  let result: T;
  try {
    result = await context.frames.run({ scope, depth }, fn);
  } catch (error) {
    // Refused if the scope was released meanwhile: release() has rolled back already. A
    // connection that cannot roll back is discarded on release; fn's error is the one to report.
    await onHeldConnection(scope, (conn) => end.rollback(conn)).catch(() => {});
    scope.depth = depth - 1;
    throw error;
  }
  try {
    await onHeldConnection(scope, (conn) => end.commit(conn));
  } finally {
    scope.depth = depth - 1;
  }
  return result;
}

/** Runs use() on the connection the scope holds (inside a transaction). */
function onHeldConnection<Conn>(
  scope: Scope<Conn>,
  use: (conn: Conn) => unknown,
): Promise<unknown> {
  // Released meanwhile: the connection went back, and the transaction with it.
  if (scope.conn === undefined) {
    return Promise.reject(new ScopeReleasedError(scope.releaseReason ?? 'done'));
  }
  return scope.use(use);
}
