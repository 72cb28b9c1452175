// RequestScope, the adapters' API: release() waits for the call in flight, refuses later calls,
// is idempotent, and returns the connection exactly once, whenever it is called.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { createScope, ScopeReleasedError } from '../../src/runtime/runtime.ts';
import {
  capturingLogger,
  countReleases,
  kinds,
  openPostgres,
  openSqlite,
  sleep,
  waitFor,
  withDatabase,
} from './databases.ts';

for (const kind of kinds) {
  describe(`${kind.name}: RequestScope`, () => {
    test('release is idempotent, refuses later calls, and returns the connection once', async () => {
      await withDatabase(kind, { max: 1 }, async ({ db }) => {
        const releases = countReleases(db);
        const scope = createScope(db);
        await scope.connect();
        await scope.connect(); // eager connect twice is harmless
        assert.equal(db.stats().inUse, 1);
        assert.equal(scope.released, false);
        assert.deepEqual(await scope.run(() => db.get('SELECT 1 AS one')), { one: 1 });
        await Promise.all([scope.release(), scope.release(), scope.release()]);
        await scope.release();
        assert.equal(scope.released, true);
        assert.equal(releases.count, 1);
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
        await assert.rejects(
          scope.run(() => db.get('SELECT 1 AS one')),
          ScopeReleasedError,
        );
        await assert.rejects(
          scope.run(() => db.atomic(async () => 1)),
          ScopeReleasedError,
        );
        await assert.rejects(
          scope.run(() => db.connect()),
          ScopeReleasedError,
        );
        await assert.rejects(scope.connect(), ScopeReleasedError);
        assert.equal(releases.count, 1);
        // The single connection serves the next request.
        const next = createScope(db);
        await next.connect();
        assert.deepEqual(await next.run(() => db.get('SELECT 2 AS two')), { two: 2 });
        await next.release();
        assert.equal(releases.count, 2);
      });
    });

    test('background work a request started can use connectionContext after release', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db }) => {
        const scope = createScope(db);
        let background!: Promise<unknown>;
        await scope.run(async () => {
          await db.connect();
          // Fire-and-forget work that outlives the response; it inherits the request's scope.
          background = new Promise((resolve) => setTimeout(resolve, 30)).then(async () => {
            await assert.rejects(db.get('SELECT 1 AS one'), ScopeReleasedError);
            return db.connectionContext(() => db.get('SELECT 1 AS one'));
          });
        });
        await scope.release();
        assert.deepEqual(await background, { one: 1 });
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('run() can re-enter the same scope later (e.g. a later framework hook)', async () => {
      await withDatabase(kind, {}, async ({ db }) => {
        const scope = createScope(db);
        await scope.run(() => db.connect());
        assert.equal(db.isClosed(), true, 'outside the scope there is no connection');
        assert.equal(
          scope.run(() => db.isClosed()),
          false,
        );
        await scope.run(async () => {
          assert.equal(await db.close(), true);
        });
        await scope.release();
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('two scopes never share a connection', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db }) => {
        const a = createScope(db);
        const b = createScope(db);
        await Promise.all([a.connect(), b.connect()]);
        assert.equal(db.stats().inUse, 2);
        await a.release();
        assert.equal(db.stats().inUse, 1);
        assert.equal(
          b.run(() => db.isClosed()),
          false,
        );
        await b.release();
      });
    });

    test('release during a transaction rolls it back; the transaction then fails', async () => {
      await withDatabase(kind, { max: 1 }, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        const scope = createScope(db);
        await scope.connect();
        let resume!: () => void;
        const paused = new Promise<void>((resolve) => {
          resume = resolve;
        });
        let inserted!: () => void;
        const firstInsert = new Promise<void>((resolve) => {
          inserted = resolve;
        });
        const transaction = scope.run(() =>
          db.atomic(async () => {
            await db.run(sql('INSERT INTO t (v) VALUES (?)'), [1]);
            inserted();
            await paused; // e.g. waiting on another service when the client goes away
            await db.run(sql('INSERT INTO t (v) VALUES (?)'), [2]);
          }),
        );
        await firstInsert;
        await scope.release();
        assert.equal(db.stats().inUse, 0);
        resume();
        await assert.rejects(transaction, ScopeReleasedError);
        assert.deepEqual(await db.query('SELECT v FROM t'), []);
        // The connection went back clean: a new transaction on it works.
        await db.atomic(() => db.run(sql('INSERT INTO t (v) VALUES (?)'), [3]));
        assert.deepEqual(await db.query('SELECT v FROM t'), [{ v: 3 }]);
      });
    });

    test('release while connect() waits for the pool cancels the wait at once', async () => {
      await withDatabase(kind, { max: 1, acquireTimeoutMillis: 5000 }, async ({ db }) => {
        const releases = countReleases(db);
        const holder = createScope(db);
        await holder.connect();
        const late = createScope(db);
        const connecting = late.connect();
        connecting.catch(() => {});
        await sleep(10);
        assert.equal(db.stats().waiting, 1);
        const released = late.release('client-gone'); // the client went away while waiting
        assert.equal(db.stats().waiting, 0, 'the cancelled checkout leaves the queue at once');
        await assert.rejects(connecting, (error: unknown) => {
          assert.ok(error instanceof ScopeReleasedError, `got ${String(error)}`);
          assert.equal(error.reason, 'client-gone');
          return true;
        });
        await released; // cancelled, not timed out: that would be PoolTimeoutError
        assert.equal(releases.count, 0, 'the cancelled checkout never got a connection');
        assert.equal(db.stats().inUse, 1);
        await holder.release();
        assert.equal(releases.count, 1);
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
      });
    });
  });
}

test('release() resolves even when returning the connection fails, and logs it', async () => {
  // The connection never goes back, so closing the pool waits only briefly for it.
  const logger = capturingLogger();
  const { db, cleanup } = await openSqlite({ closeTimeoutMillis: 50, logger });
  try {
    const scope = createScope(db);
    await scope.connect();
    const failure = new Error('release failed');
    (db as any).driver.checkIn = () => {
      throw failure;
    };
    await scope.release(); // must not reject
    assert.equal(logger.errors.length, 1);
    assert.match(logger.errors[0]!, /could not return a connection/);
    assert.match(logger.errors[0]!, /release failed/);
  } finally {
    await cleanup();
  }
});

test('postgres: release waits for the query in flight, then returns the connection', async () => {
  const { db, url, cleanup } = await openPostgres({ max: 1 });
  // Holds the lock the request's query waits for, so the query ends when the test says.
  const blocker = new pg.Client({ connectionString: url });
  await blocker.connect();
  try {
    const releases = countReleases(db);
    await blocker.query('SELECT pg_advisory_lock(42)');
    const scope = createScope(db);
    await scope.connect();
    const order: string[] = [];
    const query = scope
      .run(() => db.get<{ done: string }>("SELECT 'done' AS done, pg_advisory_xact_lock(42)"))
      .finally(() => order.push('query'));
    const lockWaits = async () =>
      (await blocker.query('SELECT 1 FROM pg_locks WHERE NOT granted')).rowCount;
    await waitFor(async () => (await lockWaits()) === 1); // the query is in flight
    const released = scope.release().then(() => order.push('release'));
    await sleep(50);
    assert.deepEqual(order, [], 'release must wait for the query in flight');
    assert.equal(db.stats().inUse, 1, 'the connection stays checked out while the query runs');
    await blocker.query('SELECT pg_advisory_unlock(42)');
    await released;
    assert.deepEqual(order, ['query', 'release']);
    // The query was not cut off: it completed normally on its connection.
    assert.deepEqual(await query, { done: 'done', pg_advisory_xact_lock: '' });
    assert.equal(releases.count, 1);
    assert.equal(db.stats().inUse, 0);
    await assert.rejects(
      scope.run(() => db.query('SELECT 1')),
      ScopeReleasedError,
    );
  } finally {
    await blocker.end();
    await cleanup();
  }
});

test('sqlite: release waits for a write that is queued behind another transaction', async () => {
  const { db, cleanup } = await openSqlite({ max: 2 });
  try {
    await db.run('CREATE TABLE t (v integer)');
    const releases = countReleases(db);
    const writer = createScope(db);
    const queued = createScope(db);
    await writer.connect();
    await queued.connect();
    let commit!: () => void;
    const transaction = writer.run(() =>
      db.atomic(async () => {
        await db.run('INSERT INTO t (v) VALUES (1)');
        await new Promise<void>((resolve) => {
          commit = resolve;
        });
      }),
    );
    await sleep(10);
    // This write waits (without blocking the event loop) for the transaction's write lock.
    const write = queued.run(() => db.run('INSERT INTO t (v) VALUES (2)'));
    await sleep(10);
    let releaseDone = false;
    const released = queued.release().then(() => {
      releaseDone = true;
    });
    await sleep(20);
    assert.equal(releaseDone, false, 'release must wait for the queued write');
    assert.equal(db.stats().inUse, 2);
    commit();
    await Promise.all([transaction, released]);
    assert.deepEqual(await write, { changes: 1, lastInsertId: 2 });
    await writer.release();
    assert.equal(releases.count, 2);
    assert.equal(db.stats().inUse, 0);
    assert.equal((await db.query('SELECT v FROM t')).length, 2);
  } finally {
    await cleanup();
  }
});
