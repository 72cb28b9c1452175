// RequestScope, the adapters' API: release() waits for the call in flight, refuses later calls,
// is idempotent, and returns the connection exactly once, whenever it is called.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PoolTimeoutError, ScopeReleasedError } from '../../src/runtime/runtime.ts';
import type { PostgresDatabase } from '../../src/runtime/runtime-postgres.ts';
import type { SqliteDatabase } from '../../src/runtime/runtime-sqlite.ts';
import { kinds, openPostgres, openSqlite, sleep, withDatabase } from './databases.ts';

/** Counts connections handed back to the pool, to prove "exactly once". */
function countReleases(db: SqliteDatabase | PostgresDatabase): { count: number } {
  const counter = { count: 0 };
  const original = (db as any).releaseConnection.bind(db);
  (db as any).releaseConnection = (conn: unknown, inTransaction: boolean) => {
    counter.count++;
    return original(conn, inTransaction);
  };
  return counter;
}

for (const kind of kinds) {
  describe(`${kind.name}: RequestScope`, () => {
    test('release is idempotent, refuses later calls, and returns the connection once', async () => {
      await withDatabase(kind, { max: 1 }, async ({ db }) => {
        const releases = countReleases(db as SqliteDatabase);
        const scope = db.createScope();
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
        const next = db.createScope();
        await next.connect();
        assert.deepEqual(await next.run(() => db.get('SELECT 2 AS two')), { two: 2 });
        await next.release();
        assert.equal(releases.count, 2);
      });
    });

    test('background work a request started can use connectionContext after release', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db }) => {
        const scope = db.createScope();
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
        const scope = db.createScope();
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
        const a = db.createScope();
        const b = db.createScope();
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
        const scope = db.createScope();
        await scope.connect();
        let resume!: () => void;
        const paused = new Promise<void>((resolve) => {
          resume = resolve;
        });
        const transaction = scope.run(() =>
          db.atomic(async () => {
            await db.run(sql('INSERT INTO t (v) VALUES (?)'), [1]);
            await paused; // e.g. waiting on another service when the client goes away
            await db.run(sql('INSERT INTO t (v) VALUES (?)'), [2]);
          }),
        );
        await sleep(20);
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

    test('release while connect() waits for the pool gives the connection straight back', async () => {
      await withDatabase(kind, { max: 1 }, async ({ db }) => {
        const releases = countReleases(db as SqliteDatabase);
        const holder = db.createScope();
        await holder.connect();
        const late = db.createScope();
        const connecting = late.connect();
        await sleep(10);
        assert.equal(db.stats().waiting, 1);
        const released = late.release(); // the client went away while waiting
        await holder.release();
        await assert.rejects(connecting, ScopeReleasedError);
        await released;
        assert.equal(releases.count, 2);
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
      });
    });

    test('connect(callback) calls back with the connection, or with the typed error', async () => {
      await withDatabase(kind, { max: 1, acquireTimeoutMillis: 100 }, async ({ db }) => {
        const holder = db.createScope();
        const connected = await new Promise<unknown>((resolve) =>
          holder.run(() => holder.connect(resolve)),
        );
        assert.equal(connected, undefined);
        assert.equal(db.stats().inUse, 1);
        // The callback runs inside the caller's scope.run(): what it starts sees the connection.
        const row = await new Promise((resolve, reject) =>
          holder.run(() => holder.connect(() => db.get('SELECT 1 AS one').then(resolve, reject))),
        );
        assert.deepEqual(row, { one: 1 });

        const waiting = db.createScope();
        const failure = await new Promise<unknown>((resolve) => waiting.connect(resolve));
        assert.ok(failure instanceof PoolTimeoutError, `got ${String(failure)}`);
        waiting.release();

        await holder.release();
        const late = await new Promise<unknown>((resolve) => holder.connect(resolve));
        assert.ok(late instanceof ScopeReleasedError);
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('runConnected runs fn in the scope once connected, or settles with the typed error', async () => {
      await withDatabase(kind, { max: 1, acquireTimeoutMillis: 100 }, async ({ db }) => {
        const holder = db.createScope();
        // What fn starts sees the request's connection, whether it ran at once or later.
        const row = await holder.runConnected(() => db.get('SELECT 1 AS one'));
        assert.deepEqual(row, { one: 1 });
        assert.equal(db.stats().inUse, 1);
        assert.equal(await holder.runConnected(() => 'again'), 'again');

        // No connection within the acquire timeout: fn is not called, onError decides.
        const waiting = db.createScope();
        let called = false;
        const failed = waiting.runConnected(
          () => {
            called = true;
          },
          (error) => {
            throw new Error(`mapped: ${error.name}`);
          },
        );
        await assert.rejects(Promise.resolve(failed), /mapped: PoolTimeoutError/);
        assert.equal(called, false);
        await assert.rejects(
          Promise.resolve(db.createScope().runConnected(() => 'unreachable')),
          PoolTimeoutError,
        );
        await waiting.release();

        await holder.release();
        await assert.rejects(
          Promise.resolve(holder.runConnected(() => 'after release')),
          ScopeReleasedError,
        );
        assert.equal(db.stats().inUse, 0);
      });
    });
  });
}

test("sqlite: with a free connection, runConnected returns fn's own result at once", async () => {
  const { db, cleanup } = await openSqlite();
  try {
    await db.connectionContext(() => db.get('SELECT 1')); // one idle connection in the pool
    const scope = db.createScope();
    const own = Promise.resolve('own');
    assert.equal(
      scope.runConnected(() => own),
      own,
    );
    assert.equal(db.stats().inUse, 1);
    await scope.release();
  } finally {
    await cleanup();
  }
});

test('sqlite: with a free connection, connect(callback) calls back before it returns', async () => {
  const { db, cleanup } = await openSqlite();
  try {
    await db.connectionContext(() => db.get('SELECT 1')); // one idle connection in the pool
    const scope = db.createScope();
    const order: string[] = [];
    scope.run(() => scope.connect(() => order.push('callback')));
    order.push('returned');
    assert.deepEqual(order, ['callback', 'returned']);
    assert.equal(db.stats().inUse, 1);
    await scope.release();
    assert.equal(db.stats().inUse, 0);
  } finally {
    await cleanup();
  }
});

test('release() resolves even when returning the connection fails, and reports it', async () => {
  // The connection never goes back, so closing the pool waits only briefly for it.
  const { db, cleanup } = await openSqlite({ closeTimeoutMillis: 50 });
  const logged: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    const scope = db.createScope();
    await scope.connect();
    const failure = new Error('release failed');
    (db as any).releaseConnection = () => Promise.reject(failure);
    await scope.release(); // must not reject
    assert.equal(logged.length, 1);
    assert.match(String(logged[0]![0]), /could not return the connection/);
    assert.equal(logged[0]![1], failure);
  } finally {
    console.error = consoleError;
    await cleanup();
  }
});

test('postgres: release waits for the query in flight, then returns the connection', async () => {
  const { db, cleanup } = await openPostgres({ max: 1 });
  try {
    const releases = countReleases(db);
    const scope = db.createScope();
    await scope.connect();
    let querySettled = false;
    const query = scope
      .run(() => db.get<{ done: string }>("SELECT 'done' AS done, pg_sleep(0.3)"))
      .finally(() => {
        querySettled = true;
      });
    await sleep(50);
    const started = Date.now();
    let releaseDone = false;
    const released = scope.release().then(() => {
      releaseDone = true;
    });
    await sleep(100);
    assert.equal(releaseDone, false, 'release must wait for the query in flight');
    assert.equal(db.stats().inUse, 1, 'the connection stays checked out while the query runs');
    await released;
    assert.ok(Date.now() - started >= 200, 'release returned before the query finished');
    // The query was not cut off: it completed normally on its connection.
    assert.deepEqual(await query, { done: 'done', pg_sleep: '' });
    assert.equal(querySettled, true);
    assert.equal(releases.count, 1);
    assert.equal(db.stats().inUse, 0);
    await assert.rejects(
      scope.run(() => db.query('SELECT 1')),
      ScopeReleasedError,
    );
  } finally {
    await cleanup();
  }
});

test('sqlite: release waits for a write that is queued behind another transaction', async () => {
  const { db, cleanup } = await openSqlite({ max: 2 });
  try {
    await db.run('CREATE TABLE t (v integer)');
    const releases = countReleases(db);
    const writer = db.createScope();
    const queued = db.createScope();
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
