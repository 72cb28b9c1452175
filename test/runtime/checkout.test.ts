// When a request's connection is checked out, on both databases: lazily at its first statement
// (a request that never queries never takes one), at once with scope.connect() (eager); one
// checkout per request however its statements interleave; db.detached() work on a connection of
// its own; and a checkout still waiting when its scope is released leaves the queue at once.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createScope, type Database, ScopeReleasedError } from '../../src/runtime/runtime.ts';
import {
  capturingLogger,
  countReleases,
  identify,
  kinds,
  openSqlite,
  recordAcquires,
  recordStatements,
  sleep,
  waitFor,
  withDatabase,
} from './databases.ts';

/** A statement that only works on the connection that created the TEMP table `mine`. */
const readMine = (db: Database<any>) =>
  db.get<{ n: number | string }>('SELECT count(*) AS n FROM mine');

for (const kind of kinds) {
  describe(`${kind.name}: lazy and eager checkout`, () => {
    test('a scope that runs no statement never takes a connection', async () => {
      await withDatabase(kind, { max: 1 }, async ({ db }) => {
        const acquired = recordAcquires(db);
        const releases = countReleases(db);
        const scope = createScope(db, 'GET /health');
        const answer = await scope.run(async () => {
          await sleep(20); // e.g. rendering a page that needs no data
          assert.equal(db.stats().inUse, 0);
          assert.equal(db.isClosed(), true);
          return 'ok';
        });
        assert.equal(answer, 'ok');
        assert.equal(db.stats().inUse, 0, 'nothing checked out while the request is open');
        await scope.release();
        assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
        assert.equal(acquired.length, 0);
        assert.equal(releases.count, 0);
      });
    });

    test('the first statement checks out; later statements reuse that connection', async (t) => {
      await withDatabase(kind, { max: 2 }, async (opened) => {
        const { db } = opened;
        const whoami = identify(opened);
        const acquired = recordAcquires(db);
        const scope = createScope(db, 'GET /x');
        const other = createScope(db, 'GET /y');
        await scope.run(async () => {
          assert.equal(db.stats().inUse, 0);
          await db.run('CREATE TEMPORARY TABLE mine (v integer)');
          assert.equal(db.stats().inUse, 1, 'the first statement checked one out');
          const first = await whoami();
          await db.run('INSERT INTO mine (v) VALUES (1)');
          await db.atomic(() => db.run('INSERT INTO mine (v) VALUES (2)'));
          assert.equal(
            Number((await readMine(db))!.n),
            2,
            'the TEMP table is visible: same connection',
          );
          assert.equal(await whoami(), first);
          t.diagnostic(`${kind.name} connection ${typeof first === 'number' ? first : 'object'}`);
          // Another request, meanwhile, gets a connection of its own.
          const theirs = await other.run(() => whoami());
          assert.notEqual(theirs, first);
          await assert.rejects(
            other.run(() => readMine(db)),
            /mine/,
          );
          assert.equal(await whoami(), first);
        });
        assert.equal(acquired.length, 2, 'one checkout per request');
        await Promise.all([scope.release(), other.release()]);
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('concurrent first statements of one scope share one checkout', async () => {
      await withDatabase(kind, { max: 2, acquireTimeoutMillis: 2000 }, async (opened) => {
        const { db } = opened;
        const whoami = identify(opened);
        const acquired = recordAcquires(db);
        const scope = createScope(db);
        // pg@8 warns that a query sent while another runs will not be queued in pg@9: the
        // runtime must run a connection's statements one at a time itself.
        const warnings: Error[] = [];
        const onWarning = (warning: Error) => warnings.push(warning);
        process.on('warning', onWarning);
        const ids = await scope.run(() => Promise.all(Array.from({ length: 5 }, () => whoami())));
        await sleep(10);
        process.off('warning', onWarning);
        assert.deepEqual(warnings.map(String), []);
        assert.equal(acquired.length, 1);
        assert.equal(new Set(ids).size, 1, 'every statement ran on the same connection');
        assert.equal(db.stats().inUse, 1);
        await scope.release();

        // While the pool is full, the first statements of one request wait as one checkout.
        const holders = [createScope(db), createScope(db)];
        await Promise.all(holders.map((h) => h.connect()));
        const late = createScope(db);
        const pending = late.run(() => Promise.all(Array.from({ length: 5 }, () => whoami())));
        await waitFor(() => db.stats().waiting > 0);
        await sleep(10);
        assert.equal(db.stats().waiting, 1, 'five statements, one checkout waiting');
        await holders[0]!.release();
        const lateIds = await pending;
        assert.equal(new Set(lateIds).size, 1);
        assert.equal(db.stats().inUse, 2);
        await Promise.all([holders[1]!.release(), late.release()]);
        assert.deepEqual(db.stats().inUse, 0);
      });
    });

    test('eager: scope.connect() checks out at once, and statements then use that connection', async () => {
      await withDatabase(kind, { max: 2 }, async (opened) => {
        const { db } = opened;
        const acquired = recordAcquires(db);
        const ran = recordStatements(db);
        const scope = createScope(db);
        await scope.connect();
        assert.equal(db.stats().inUse, 1);
        assert.equal(acquired.length, 1);
        assert.equal(
          scope.run(() => db.isClosed()),
          false,
        );
        await scope.run(async () => {
          await db.get('SELECT 1 AS one');
          await db.get('SELECT 2 AS two');
        });
        assert.equal(acquired.length, 1, 'no second checkout');
        assert.ok(
          ran.every((r) => r.conn === acquired[0]),
          'every statement on the eagerly checked-out connection',
        );
        await scope.release();
        assert.equal(db.stats().inUse, 0);
      });
    });
  });

  describe(`${kind.name}: db.detached()`, () => {
    test('inside a request, runs on its own connection and outlives the response', async () => {
      await withDatabase(kind, { max: 3 }, async (opened) => {
        const { db } = opened;
        const whoami = identify(opened);
        const releases = countReleases(db);
        const scope = createScope(db, 'POST /orders');
        let mine: unknown;
        let job!: Promise<unknown[]>;
        let jobDone = false;
        let jobStarted!: () => void;
        const started = new Promise<void>((resolve) => {
          jobStarted = resolve;
        });
        let inUseDuringBoth = 0;
        await scope.run(async () => {
          mine = await whoami();
          // Fire-and-forget work started by the request: it must not use the request's connection.
          job = db.detached(async () => {
            const first = await whoami();
            inUseDuringBoth = db.stats().inUse;
            jobStarted();
            await sleep(100); // still running after the response was sent
            const second = await whoami();
            await db.atomic(() => db.get('SELECT 1 AS one'));
            return [first, second];
          });
          job.then(
            () => {
              jobDone = true;
            },
            () => {},
          );
          await started;
        });
        assert.equal(inUseDuringBoth, 2, 'the request and the detached work, one connection each');
        await scope.release(); // the response is sent
        assert.equal(jobDone, false, 'the detached work is still running');
        assert.equal(
          db.stats().inUse,
          1,
          'the request gave its connection back; the job keeps its own',
        );
        // The request itself is over: its later calls are refused, pointing at db.detached().
        await assert.rejects(
          scope.run(() => db.get('SELECT 1')),
          (error: unknown) => {
            assert.ok(error instanceof ScopeReleasedError, `got ${String(error)}`);
            assert.equal(error.reason, 'done');
            assert.match(error.message, /db\.detached\(fn\)/);
            return true;
          },
        );
        const [first, second] = await job;
        assert.notEqual(first, mine, 'the detached work has a connection of its own');
        assert.equal(second, first, 'and keeps it for all its statements');
        assert.equal(db.stats().inUse, 0, 'returned when fn settled');
        assert.equal(releases.count, 2);
      });
    });

    test('returns its connection when fn throws, and takes none if fn runs no statement', async () => {
      await withDatabase(kind, { max: 1 }, async ({ db }) => {
        const acquired = recordAcquires(db);
        await assert.rejects(
          db.detached(async () => {
            await db.get('SELECT 1 AS one');
            throw new Error('job failed');
          }),
          /job failed/,
        );
        assert.equal(db.stats().inUse, 0);
        assert.equal(acquired.length, 1);
        assert.equal(await db.detached(async () => 'no statement'), 'no statement');
        assert.equal(acquired.length, 1, 'lazy: no statement, no checkout');
        assert.equal(db.stats().inUse, 0);
      });
    });
  });

  describe(`${kind.name}: a released scope's waiting checkout is cancelled`, () => {
    test('a lazy first statement waiting for the pool is refused at once when its scope is released', async () => {
      const logger = capturingLogger();
      const options = { max: 1, acquireTimeoutMillis: 5000, logger };
      await withDatabase(kind, options, async ({ db }) => {
        const holder = createScope(db);
        await holder.connect();
        const scope = createScope(db, 'GET /slow');
        const statement = scope.run(() => db.get('SELECT 1 AS one'));
        statement.catch(() => {});
        await waitFor(() => db.stats().waiting === 1);
        const released = scope.release('client-gone');
        assert.equal(db.stats().waiting, 0, 'left the queue at once, not at the deadline');
        await assert.rejects(statement, (error: unknown) => {
          assert.ok(error instanceof ScopeReleasedError, `got ${String(error)}`);
          assert.equal(error.reason, 'client-gone');
          assert.equal(error.status, 499);
          return true;
        });
        await released; // refused, not timed out: that would be PoolTimeoutError
        assert.equal(db.stats().inUse, 1);
        await holder.release();
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
        assert.deepEqual(logger.errors, [], 'nothing logged for a client that left');
      });
    });

    test('after db.close(), every statement of the scope waiting for the pool is cancelled', async () => {
      await withDatabase(kind, { max: 1, acquireTimeoutMillis: 5000 }, async ({ db }) => {
        const holder = createScope(db);
        await holder.connect();
        const scope = createScope(db);
        // Many at once is no leak: Node must not warn about the listeners of one scope's waits.
        const warnings: Error[] = [];
        const onWarning = (warning: Error) => warnings.push(warning);
        process.on('warning', onWarning);
        const statements = scope.run(async () => {
          await db.close(); // its statements now borrow a connection each
          return Promise.allSettled(
            Array.from({ length: 12 }, (_, i) => db.get(`SELECT ${i} AS n`)),
          );
        });
        await waitFor(() => db.stats().waiting === 12);
        const released = scope.release('client-gone');
        assert.equal(db.stats().waiting, 0, 'every wait left the queue at once');
        await sleep(10);
        process.off('warning', onWarning);
        assert.deepEqual(warnings.map(String), []);
        const outcomes = await statements;
        for (const outcome of outcomes) {
          assert.equal(outcome.status, 'rejected');
          assert.ok(
            (outcome as PromiseRejectedResult).reason instanceof ScopeReleasedError,
            `got ${String((outcome as PromiseRejectedResult).reason)}`,
          );
        }
        await released;
        await holder.release();
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
      });
    });
  });
}

test('sqlite: a transaction waiting for its turn to write is cancelled when its scope is released', async () => {
  const logger = capturingLogger();
  const { db, cleanup } = await openSqlite({ max: 2, acquireTimeoutMillis: 3000, logger });
  try {
    await db.run('CREATE TABLE t (v integer)');
    const acquired = recordAcquires(db);
    const writer = createScope(db, 'POST /a');
    let commit!: () => void;
    const first = writer.run(() =>
      db.atomic(async () => {
        await db.run('INSERT INTO t (v) VALUES (1)');
        await new Promise<void>((resolve) => {
          commit = resolve;
        });
      }),
    );
    await waitFor(() => commit !== undefined);
    // A second writer queues for its turn; its client leaves meanwhile.
    const queued = createScope(db, 'POST /b');
    const second = queued.run(() => db.atomic(() => db.run('INSERT INTO t (v) VALUES (2)')));
    second.catch(() => {});
    await sleep(20);
    // Cancelled at once. Otherwise the release would wait for the turn, which the first writer
    // holds until below, and the write would end with PoolTimeoutError at its deadline.
    await queued.release('client-gone');
    await assert.rejects(second, (error: unknown) => {
      assert.ok(error instanceof ScopeReleasedError, `got ${String(error)}`);
      assert.equal(error.reason, 'client-gone');
      return true;
    });
    assert.deepEqual(logger.errors, [], 'nothing logged as an error for a client that left');
    commit();
    await first;
    await writer.release();
    assert.equal(acquired.length, 1, 'the cancelled transaction never took a connection');
    assert.deepEqual(await db.query('SELECT v FROM t'), [{ v: 1 }]);
    assert.equal(db.stats().inUse, 0);
    // The write turn is free again.
    await db.atomic(() => db.run('INSERT INTO t (v) VALUES (3)'));
  } finally {
    await cleanup();
  }
});
