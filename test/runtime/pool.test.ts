// Pool limits on both databases: a full pool fails at its acquire deadline (never hangs), works
// again after a release, and closePool() refuses new work and waits for work in progress.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  createScope,
  PoolClosedError,
  PoolTimeoutError,
  ScopeReleasedError,
} from '../../src/runtime/runtime.ts';
import {
  capturingLogger,
  countReleases,
  kinds,
  settlesWithin,
  sleep,
  withDatabase,
} from './databases.ts';

// Also bounds how long opening a PostgreSQL connection may take (pg's connectionTimeoutMillis):
// not so short that a loaded machine fails to open the three this test holds.
const TIMEOUT = 600;
// Timers can fire a little early as measured here: Node schedules them from the event loop's
// cached time. Late is never checked against the clock: see settlesWithin().
const EARLY = 20;

async function elapsed(promise: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const started = performance.now();
  try {
    await promise;
    return { ms: performance.now() - started, error: undefined };
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
}

for (const kind of kinds) {
  describe(`${kind.name}: pool limits`, () => {
    test('a full pool rejects the next checkout with PoolTimeoutError at its deadline', async () => {
      const logger = capturingLogger();
      const options = { max: 3, acquireTimeoutMillis: TIMEOUT, logger };
      await withDatabase(kind, options, async ({ db }) => {
        const held = [createScope(db), createScope(db), createScope(db)];
        await Promise.all(held.map((scope) => scope.connect()));
        assert.equal(db.stats().inUse, 3);

        const extra = createScope(db);
        const waiting = elapsed(extra.connect());
        await sleep(20);
        assert.equal(db.stats().waiting, 1);
        assert.ok(await settlesWithin(waiting, TIMEOUT * 10), 'still waiting past its deadline');
        const { ms, error } = await waiting;
        assert.ok(error instanceof PoolTimeoutError, `expected PoolTimeoutError, got ${error}`);
        assert.equal(error.statusCode, 503);
        assert.match(error.message, new RegExp(`within ${TIMEOUT} ms`));
        // The client's message says only that the service is busy; the advice is the operator's.
        assert.doesNotMatch(error.message, /max|acquireTimeout|release/);
        assert.equal(logger.errors.length, 1, 'the operator is told once per timeout');
        assert.match(logger.errors[0]!, new RegExp(`within ${TIMEOUT} ms`));
        assert.match(logger.errors[0]!, /all 3 are in use/);
        assert.match(logger.errors[0]!, /raise max or acquireTimeoutMillis/);
        assert.ok(
          ms >= TIMEOUT - EARLY,
          `rejected after ${ms} ms, before the ${TIMEOUT} ms deadline`,
        );
        assert.equal(db.stats().waiting, 0);
        await extra.release();

        // A statement outside any request waits the same way.
        const borrowing = elapsed(db.get('SELECT 1 AS one'));
        assert.ok(await settlesWithin(borrowing, TIMEOUT * 10), 'still waiting past its deadline');
        const borrowed = await borrowing;
        assert.ok(borrowed.error instanceof PoolTimeoutError, `got ${borrowed.error}`);
        assert.ok(borrowed.ms >= TIMEOUT - EARLY, `${borrowed.ms} ms`);
        assert.equal(logger.errors.length, 2);

        // One release and the pool serves again, immediately.
        await held[0]!.release();
        const again = await elapsed(db.get('SELECT 1 AS one'));
        // No PoolTimeoutError: served by the release, not left to the deadline.
        assert.equal(again.error, undefined);
        // A waiter is served as soon as a connection comes back, well before its deadline.
        const next = createScope(db);
        await next.connect();
        const last = createScope(db);
        const queued = elapsed(last.connect());
        await sleep(50);
        await held[1]!.release();
        const served = await queued;
        assert.equal(served.error, undefined, 'served by the release, before its deadline');
        await Promise.all([held[2]!.release(), next.release(), last.release()]);
        assert.deepEqual(db.stats(), { total: 3, idle: 3, inUse: 0, waiting: 0 });
      });
    });

    test('each checkout in line times out acquireTimeoutMillis after it joined, whoever left before it', async () => {
      const options = { max: 1, acquireTimeoutMillis: TIMEOUT, logger: capturingLogger() };
      await withDatabase(kind, options, async ({ db }) => {
        const holder = createScope(db);
        await holder.connect();
        const first = createScope(db);
        const firstWait = elapsed(first.connect());
        await sleep(TIMEOUT / 3);
        const second = createScope(db);
        const secondWait = elapsed(second.connect());
        await sleep(TIMEOUT / 3);
        const third = createScope(db);
        const thirdWait = elapsed(third.connect());
        // The first in line leaves early (its request ended); the second is served by the
        // holder's release; the third still waits for its own deadline.
        await first.release();
        assert.ok((await firstWait).error instanceof ScopeReleasedError);
        await holder.release();
        const served = await secondWait;
        assert.equal(served.error, undefined, `the second in line got ${served.error}`);
        assert.ok(await settlesWithin(thirdWait, TIMEOUT * 10), 'still waiting past its deadline');
        const timedOut = await thirdWait;
        assert.ok(timedOut.error instanceof PoolTimeoutError, `got ${timedOut.error}`);
        assert.ok(timedOut.ms >= TIMEOUT - EARLY, `rejected after ${timedOut.ms} ms`);
        assert.equal(db.stats().waiting, 0);
        await Promise.all([second.release(), third.release()]);
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('while closePool() drains, checkouts fail fast with PoolClosedError; then the pool opens again', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db }) => {
        const holder = createScope(db);
        await holder.run(() => db.get('SELECT 1 AS one'));
        const closing = db.closePool();
        assert.equal(db.closePool(), closing, 'one drain at a time');
        // Refused, not queued: a queued checkout would wait for the holder, which releases only
        // below, and fail with PoolTimeoutError.
        const { error } = await elapsed(db.get('SELECT 1 AS one'));
        assert.ok(error instanceof PoolClosedError, `got ${error}`);
        assert.equal((error as PoolClosedError).status, 503);
        await assert.rejects(createScope(db).connect(), PoolClosedError);
        await assert.rejects(
          db.connectionContext(async () => 1),
          PoolClosedError,
        );
        await assert.rejects(
          db.atomic(async () => 1),
          PoolClosedError,
        );
        await holder.release();
        await closing;
        assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
        // Closed, not dead: the next checkout opens the pool again, as after peewee's close_all().
        assert.deepEqual(await db.get('SELECT 1 AS one'), { one: 1 });
        await db.connectionContext(() => db.atomic(() => db.run('SELECT 1')));
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
        await db.closePool();
        await db.closePool(); // idempotent
        assert.equal(db.stats().total, 0);
      });
    });

    test('closePool() waits for a connection in use, then closes', async () => {
      await withDatabase(kind, { max: 2, closeTimeoutMillis: 60_000 }, async ({ db }) => {
        const releases = countReleases(db);
        const scope = createScope(db);
        await scope.connect();
        const closing = elapsed(db.closePool());
        await sleep(20);
        // Still usable by the request that holds it; new checkouts are refused.
        assert.deepEqual(await scope.run(() => db.get('SELECT 1 AS one')), { one: 1 });
        await assert.rejects(createScope(db).connect(), PoolClosedError);
        await sleep(150);
        await scope.release();
        const { ms, error } = await closing;
        assert.equal(error, undefined);
        assert.ok(ms >= 150, `closePool returned after ${ms} ms, before the release`);
        // Returned by the release, not closed by a drain that gave up waiting.
        assert.deepEqual(releases, { count: 1, discarded: 0 });
        assert.equal(db.stats().total, 0);
      });
    });

    test('closePool() gives up waiting after closeTimeoutMillis and closes anyway', async () => {
      await withDatabase(kind, { max: 2, closeTimeoutMillis: 200 }, async ({ db }) => {
        const scope = createScope(db);
        await scope.connect();
        // The request never releases before closePool() returns: only the timeout can end it.
        const closing = elapsed(db.closePool());
        assert.ok(await settlesWithin(closing, 200 * 10), 'closePool() waited past its timeout');
        const { ms, error } = await closing;
        assert.equal(error, undefined);
        assert.ok(ms >= 200 - EARLY, `closePool took ${ms} ms`);
        assert.equal(db.stats().total, 0);
        // The request's late release is harmless (no double release).
        await scope.release();
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('closePool() resolves as soon as the last connection comes back', async () => {
      await withDatabase(kind, { max: 3, closeTimeoutMillis: 60_000 }, async ({ db }) => {
        const releases = countReleases(db);
        const first = createScope(db);
        const second = createScope(db);
        await Promise.all([first.connect(), second.connect()]);
        const closing = elapsed(db.closePool());
        setTimeout(() => void first.release(), 50);
        setTimeout(() => void second.release(), 150);
        const { ms, error } = await closing;
        assert.equal(error, undefined);
        assert.ok(ms >= 150 - EARLY, `closePool returned after ${ms} ms, before the last release`);
        // Both came back by release; a drain past its timeout would have discarded them.
        assert.deepEqual(releases, { count: 2, discarded: 0 });
        assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
      });
    });

    test('closePool() rejects checkouts waiting in the queue at once', async () => {
      await withDatabase(kind, { max: 1, acquireTimeoutMillis: 5000 }, async ({ db }) => {
        const holder = createScope(db);
        await holder.connect();
        const waiting = elapsed(createScope(db).connect());
        await sleep(10);
        assert.equal(db.stats().waiting, 1);
        const closing = db.closePool();
        assert.equal(db.stats().waiting, 0);
        // Rejected by closePool(), not left to its deadline (PoolTimeoutError): the holder
        // releases only below.
        const { error } = await waiting;
        assert.ok(error instanceof PoolClosedError, `got ${error}`);
        await holder.release();
        await closing;
      });
    });

    test('closePool() past its timeout closes a held connection: its next statement gets PoolClosedError', async () => {
      await withDatabase(kind, { max: 2, closeTimeoutMillis: 200 }, async ({ db }) => {
        const releases = countReleases(db);
        const scope = createScope(db);
        await scope.run(() => db.get('SELECT 1 AS one'));
        const closing = elapsed(db.closePool());
        assert.ok(await settlesWithin(closing, 200 * 10), 'closePool() waited past its timeout');
        const { ms, error } = await closing;
        assert.equal(error, undefined);
        assert.ok(ms >= 200 - EARLY, `closePool took ${ms} ms`);
        assert.equal(releases.discarded, 1, 'the connection was closed, not kept');
        await assert.rejects(
          scope.run(() => db.get('SELECT 1 AS one')),
          (failure: unknown) => {
            assert.ok(failure instanceof PoolClosedError, `got ${String(failure)}`);
            assert.equal(failure.status, 503);
            assert.match(failure.message, /shutting down/);
            assert.doesNotMatch(failure.message, /retried/);
            return true;
          },
        );
        await scope.release();
        assert.equal(releases.count, 1, 'no second release after the forced close');
        assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
        await assert.rejects(
          scope.run(() => db.get('SELECT 1')),
          ScopeReleasedError,
        );
      });
    });
  });
}
