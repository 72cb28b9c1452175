/**
 * db-hooks runtime: db.atomic(). A scope's outermost block is a transaction (BEGIN, with the
 * block's isolation level and access mode, then COMMIT, or ROLLBACK when it throws), run again
 * on a serialization failure or deadlock when the block allows retries; a nested block is a
 * savepoint, so an inner failure rolls back only the inner part. db.onCommit() callbacks wait
 * here for the outermost commit, and are dropped with the part of the transaction they were
 * registered in when it rolls back.
 */
import type { IsolationLevel, TransactionOptions } from './runtime-driver.js';
import { ConnectionStateError, ScopeReleasedError } from './runtime-errors.js';
import type { Logger } from './runtime-pool.js';
import type { Frame, Scope, ScopeContext } from './runtime-scope.js';
import { streamOpenError } from './runtime-stream.js';

/** db.atomic()'s options. All of them apply to the outermost block only. */
export interface AtomicOptions extends TransactionOptions {
  /**
   * Run the whole block again, up to this many times, when the transaction fails in a way a
   * new attempt may not (PostgreSQL: serialization failure 40001, deadlock 40P01). The block
   * gets the attempt's number (1, 2, ...). Default 0.
   */
  retries?: number;
}

/** What db.atomic() runs: the attempt's number is 1, or more when the block is run again. */
export type AtomicBlock<T> = (attempt: number) => Promise<T>;

/** Runs on a commit: each callback db.onCommit() got, in order (see Database). */
export type CommitHook = () => unknown;

const isolationLevels: readonly IsolationLevel[] = [
  'read uncommitted',
  'read committed',
  'repeatable read',
  'serializable',
];

interface Ending<Conn> {
  commit(conn: Conn): unknown;
  rollback(conn: Conn): unknown;
}

/** db.atomic(fn, options) in `frame`: a transaction, run again on retryable failures, or a savepoint. */
export async function atomic<Conn, T>(
  context: ScopeContext<Conn>,
  frame: Frame<Conn>,
  fn: AtomicBlock<T>,
  options: AtomicOptions,
): Promise<T> {
  const { scope } = frame;
  if (scope.releaseReason) throw new ScopeReleasedError(scope.releaseReason);
  if (scope.stream !== undefined) throw streamOpenError();
  const retries = checkOptions(options);
  await scope.beginRequestTransaction?.();
  if (frame.depth !== scope.depth) {
    throw new ConnectionStateError(
      'db.atomic() was called while another db.atomic() of the same request is running ' +
        '(for example in Promise.all). A request has one connection, so its transactions ' +
        'must run one after another: await each one before starting the next.',
    );
  }
  if (scope.depth > 0) {
    const { isolationLevel, readOnly, deferrable } = options;
    const given = [isolationLevel, readOnly, deferrable].some((option) => option !== undefined);
    if (given || retries > 0) {
      throw new ConnectionStateError(
        "db.atomic()'s isolationLevel, readOnly, deferrable and retries apply to a whole " +
          'transaction, and this block runs inside one (an outer db.atomic(), an ORM ' +
          "transaction, or the request's own transaction), where it can only be a savepoint. " +
          'Pass them to the outermost block, or turn the per-request transaction off for ' +
          'this route.',
      );
    }
    return savepoint(context, scope, () => fn(1));
  }
  context.driver.checkTransactionOptions?.(options);
  scope.holdsConnection = true; // a transaction needs one connection from BEGIN to COMMIT
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction(context, scope, () => fn(attempt), options);
    } catch (error) {
      if (attempt > retries || scope.releaseReason || !isRetryable(context, error)) throw error;
      // Apart, so that the attempts of conflicting requests do not meet again.
      const delay = Math.random() * Math.min(100, 5 * 2 ** attempt);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** The number of retries; throws for options that are not what their types say. */
function checkOptions(options: AtomicOptions): number {
  const { isolationLevel, retries = 0 } = options;
  if (isolationLevel !== undefined && !isolationLevels.includes(isolationLevel)) {
    throw new TypeError(
      `db.atomic(): isolationLevel ${JSON.stringify(isolationLevel)} is not one of ` +
        `${isolationLevels.map((level) => `'${level}'`).join(', ')}.`,
    );
  }
  if (!Number.isInteger(retries) || retries < 0) {
    throw new TypeError(`db.atomic(): retries must be a whole number, 0 or more (got ${retries}).`);
  }
  return retries;
}

/** The driver's verdict on the error or on what it wraps (an ORM's query error). */
function isRetryable<Conn>(context: ScopeContext<Conn>, error: unknown): boolean {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; depth++) {
    if (context.driver.isRetryable?.(cause)) return true;
    cause = cause.cause;
  }
  return false;
}

/** The outermost block: BEGIN (with `options`), fn, then COMMIT or ROLLBACK. */
export async function transaction<Conn, T>(
  context: ScopeContext<Conn>,
  scope: Scope<Conn>,
  fn: () => Promise<T>,
  options?: TransactionOptions,
): Promise<T> {
  await begin(context, scope, options);
  return runThenEnd(context, scope, 1, fn);
}

/** BEGIN on the scope's connection; depth 1 from the start, so a concurrent atomic() sees it. */
export async function begin<Conn>(
  context: ScopeContext<Conn>,
  scope: Scope<Conn>,
  options?: TransactionOptions,
): Promise<void> {
  const { driver } = context;
  scope.depth = 1;
  try {
    await scope.track(async () => {
      // SQLite: the turn to write comes before the connection, so a request queued behind
      // another's transaction holds no connection meanwhile.
      const turn = scope.conn === undefined ? await driver.transactionTurn?.(scope) : undefined;
      try {
        // Not through use(), which would wait for this very BEGIN in a request's transaction.
        const conn = scope.conn ?? (await scope.connection());
        await driver.begin(conn, turn, options);
      } catch (error) {
        turn?.(); // never reached begin(), or begin() failed and gave it up already
        throw error;
      }
    });
  } catch (error) {
    scope.depth = 0;
    throw error;
  }
  scope.commitHooks ??= [[]];
}

/** Ends the outermost transaction; on a commit, hands its db.onCommit() callbacks over. */
export async function end<Conn>(
  context: ScopeContext<Conn>,
  scope: Scope<Conn>,
  outcome: 'commit' | 'rollback',
): Promise<void> {
  const hooks = scope.commitHooks?.flat() ?? [];
  scope.commitHooks = undefined;
  try {
    await onHeldConnection(scope, (conn) => context.driver[outcome](conn));
  } finally {
    scope.depth = 0;
  }
  if (outcome === 'commit' && hooks.length > 0) context.afterCommit(hooks);
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
  scope.commitHooks?.push([]);
  return runThenEnd(context, scope, depth + 1, fn, {
    commit: async (conn) => {
      const inner = scope.commitHooks?.pop() ?? [];
      await run(`RELEASE SAVEPOINT ${name}`)(conn);
      // Its callbacks now wait for the enclosing block, and go if that one rolls back.
      scope.commitHooks?.at(-1)?.push(...inner);
    },
    rollback: async (conn) => {
      scope.commitHooks?.pop();
      await run(`ROLLBACK TO SAVEPOINT ${name}`)(conn);
      await run(`RELEASE SAVEPOINT ${name}`)(conn);
    },
  });
}

/**
 * Runs a block at `depth`, then commits it, or rolls it back when fn throws: with end() at
 * depth 1, with a savepoint's `ending` below.
 */
async function runThenEnd<Conn, T>(
  context: ScopeContext<Conn>,
  scope: Scope<Conn>,
  depth: number,
  fn: () => Promise<T>,
  ending?: Ending<Conn>,
): Promise<T> {
  let result: T;
  try {
    result = await context.frames.run({ scope, depth }, fn);
  } catch (error) {
    // Refused if the scope was released meanwhile: release() has rolled back already. A
    // connection that cannot roll back is discarded on release; fn's error is the one to report.
    if (ending === undefined) await end(context, scope, 'rollback').catch(() => {});
    else await onHeldConnection(scope, (conn) => ending.rollback(conn)).catch(() => {});
    scope.depth = depth - 1;
    throw error;
  }
  if (ending === undefined) {
    await end(context, scope, 'commit');
    return result;
  }
  try {
    await onHeldConnection(scope, (conn) => ending.commit(conn));
  } finally {
    scope.depth = depth - 1;
  }
  return result;
}

/**
 * Runs committed hooks in turn, each as db.detached() work (`detached`), the first one at once;
 * a failure is logged and the next one runs.
 */
export function runCommitHooks(
  hooks: CommitHook[],
  detached: (fn: () => Promise<void>) => Promise<void>,
  logger: Logger,
): void {
  let chain: Promise<void> | undefined;
  for (const hook of hooks) {
    const run = () =>
      detached(async () => {
        await hook();
      }).catch((error: unknown) => {
        logger.error('db-hooks: an onCommit() callback failed after its commit:', error);
      });
    chain = chain === undefined ? run() : chain.then(run);
  }
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
