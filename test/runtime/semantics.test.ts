// peewee's connection semantics, on both databases: connect/close/isClosed, connectionContext,
// atomic() with nested savepoints, statements outside a request, and the error types.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ConnectionStateError,
  createScope,
  DatabaseUnavailableError,
  DbHooksError,
  PoolClosedError,
  PoolTimeoutError,
  ScopeReleasedError,
  ServiceUnavailableError,
} from '../../src/runtime/runtime.ts';
import { kinds, recordAcquires, recordStatements, withDatabase } from './databases.ts';

test('errors are typed, carry a code, and pool errors map to HTTP 503', () => {
  const timeout = new PoolTimeoutError(300);
  assert.ok(
    timeout instanceof DbHooksError && timeout instanceof Error,
    'timeout instanceof DbHooksError && timeout instanceof Error',
  );
  assert.ok(
    timeout instanceof ServiceUnavailableError,
    'timeout instanceof ServiceUnavailableError',
  );
  assert.equal(timeout.code, 'POOL_TIMEOUT');
  assert.equal(timeout.name, 'PoolTimeoutError');
  assert.deepEqual([timeout.status, timeout.statusCode, timeout.expose], [503, 503, true]);
  assert.match(timeout.message, /within 300 ms/);
  assert.equal(timeout.getResponse().status, 503);
  assert.equal(timeout.getResponse().headers.get('retry-after'), '1');
  const closed = new PoolClosedError();
  assert.equal(closed.code, 'POOL_CLOSED');
  assert.equal(closed.status, 503);
  assert.match(closed.message, /shutting down/);
  const unavailable = new DatabaseUnavailableError();
  assert.equal(unavailable.code, 'DATABASE_UNAVAILABLE');
  assert.ok(
    unavailable instanceof ServiceUnavailableError,
    'unavailable instanceof ServiceUnavailableError',
  );
  assert.equal(new ConnectionStateError('x').code, 'CONNECTION_STATE');
  const done = new ScopeReleasedError('done');
  assert.equal(done.code, 'SCOPE_RELEASED');
  assert.deepEqual(
    [done.reason, done.status, done.statusCode, done.expose],
    ['done', 500, 500, false],
  );
  assert.match(done.message, /db\.detached\(/, 'says what to use for work after the response');
  const gone = new ScopeReleasedError('client-gone');
  assert.deepEqual(
    [gone.reason, gone.status, gone.statusCode, gone.expose],
    ['client-gone', 499, 499, true],
  );
  assert.match(gone.message, /client went away/);
});

for (const kind of kinds) {
  describe(`${kind.name}: peewee semantics`, () => {
    test('connect twice throws unless reuseIfOpen; close reports whether it closed', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db }) => {
        const scope = createScope(db);
        await scope.run(async () => {
          assert.equal(db.isClosed(), true);
          assert.equal(await db.connect(), true);
          assert.equal(db.isClosed(), false);
          assert.equal(db.stats().inUse, 1);
          await assert.rejects(db.connect(), (error: unknown) => {
            assert.ok(
              error instanceof ConnectionStateError,
              'error instanceof ConnectionStateError',
            );
            assert.match(error.message, /reuseIfOpen/);
            return true;
          });
          assert.equal(await db.connect({ reuseIfOpen: true }), false);
          assert.equal(db.stats().inUse, 1, 'reuse must not check out a second connection');
          assert.equal(await db.close(), true);
          assert.equal(db.isClosed(), true);
          assert.equal(await db.close(), false, 'a second close is a no-op');
          assert.equal(db.stats().inUse, 0);
        });
        await scope.release();
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('connect outside any request scope says what to do', async () => {
      await withDatabase(kind, {}, async ({ db }) => {
        await assert.rejects(db.connect(), (error: unknown) => {
          assert.ok(error instanceof ConnectionStateError, 'error instanceof ConnectionStateError');
          assert.match(error.message, /connectionContext/);
          return true;
        });
        assert.equal(db.isClosed(), true);
        assert.equal(await db.close(), false);
      });
    });

    test('close inside atomic() throws and leaves the transaction usable', async () => {
      await withDatabase(kind, {}, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        await createScope(db).run(async () => {
          await db.connect();
          await db.atomic(async () => {
            await db.run(sql('INSERT INTO t (v) VALUES (?)'), [1]);
            await assert.rejects(db.close(), ConnectionStateError);
            assert.equal(db.isClosed(), false);
          });
          assert.equal(await db.close(), true);
        });
        assert.deepEqual(await db.query('SELECT v FROM t'), [{ v: 1 }]);
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('connectionContext is re-entrant: only the outermost returns the connection', async () => {
      await withDatabase(kind, { max: 3 }, async ({ db }) => {
        const result = await db.connectionContext(async () => {
          assert.equal(db.isClosed(), false);
          assert.equal(db.stats().inUse, 1);
          const inner = await db.connectionContext(async () => {
            assert.equal(db.stats().inUse, 1, 'nested context reuses the connection');
            return 'inner';
          });
          assert.equal(db.isClosed(), false, 'inner context must not close the outer connection');
          assert.equal(db.stats().inUse, 1);
          return inner;
        });
        assert.equal(result, 'inner');
        assert.equal(db.stats().inUse, 0);
        assert.equal(db.isClosed(), true);
        // It also returns the connection when fn throws.
        await assert.rejects(
          db.connectionContext(async () => {
            throw new Error('boom');
          }),
          /boom/,
        );
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('connectionContext inside a request reuses its open connection', async () => {
      await withDatabase(kind, {}, async ({ db }) => {
        const scope = createScope(db);
        await scope.connect();
        await scope.run(() =>
          db.connectionContext(async () => {
            assert.equal(db.stats().inUse, 1);
          }),
        );
        assert.equal(
          scope.run(() => db.isClosed()),
          false,
          'the request keeps its connection',
        );
        await scope.release();
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('nested atomic() uses savepoints: an inner failure rolls back only its part', async () => {
      await withDatabase(kind, {}, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        const insert = sql('INSERT INTO t (v) VALUES (?)');
        await db.connectionContext(async () => {
          await db.atomic(async () => {
            await db.run(insert, [1]);
            await assert.rejects(
              db.atomic(async () => {
                await db.run(insert, [2]);
                await db.atomic(async () => {
                  await db.run(insert, [3]);
                });
                throw new Error('inner');
              }),
              /inner/,
            );
            await db.atomic(async () => {
              await db.run(insert, [4]);
            });
            // The transaction is still usable after the inner rollback.
            assert.deepEqual(
              (await db.query<{ v: number }>('SELECT v FROM t ORDER BY v')).map((r) => r.v),
              [1, 4],
            );
          });
          // A failing outer block rolls back everything, savepoints included.
          await assert.rejects(
            db.atomic(async () => {
              await db.run(insert, [5]);
              await db.atomic(async () => {
                await db.run(insert, [6]);
              });
              throw new Error('outer');
            }),
            /outer/,
          );
        });
        const rows = await db.query<{ v: number }>('SELECT v FROM t ORDER BY v');
        assert.deepEqual(
          rows.map((r) => r.v),
          [1, 4],
        );
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('two concurrent atomic() blocks in one request: the second is refused, not merged', async () => {
      await withDatabase(kind, {}, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        const insert = sql('INSERT INTO t (v) VALUES (?)');
        const scope = createScope(db);
        await scope.connect();
        const [first, second] = await scope.run(() =>
          Promise.allSettled([
            db.atomic(async () => {
              await db.run(insert, [1]);
              await new Promise((resolve) => setTimeout(resolve, 20));
              // Nested blocks inside the running one are still fine.
              await db.atomic(() => db.run(insert, [2]));
            }),
            db.atomic(async () => {
              await db.run(insert, [3]);
            }),
          ]),
        );
        assert.equal(first.status, 'fulfilled');
        assert.equal(second.status, 'rejected');
        assert.ok(
          (second as PromiseRejectedResult).reason instanceof ConnectionStateError,
          '(second as PromiseRejectedResult).reason instanceof ConnectionStateError',
        );
        assert.match((second as PromiseRejectedResult).reason.message, /one after another/);
        // One after another they work.
        await scope.run(async () => {
          await db.atomic(() => db.run(insert, [4]));
          await db.atomic(() => db.run(insert, [5]));
        });
        await scope.release();
        const rows = await db.query<{ v: number }>('SELECT v FROM t ORDER BY v');
        assert.deepEqual(
          rows.map((r) => r.v),
          [1, 2, 4, 5],
        );
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('an SQL error inside atomic() rolls back and the connection stays usable', async () => {
      await withDatabase(kind, { max: 1 }, async ({ db, sql }) => {
        await db.run('CREATE TABLE u (k integer PRIMARY KEY)');
        await db.run(sql('INSERT INTO u (k) VALUES (?)'), [1]);
        await db.connectionContext(async () => {
          await assert.rejects(
            db.atomic(async () => {
              await db.run(sql('INSERT INTO u (k) VALUES (?)'), [2]);
              await db.run(sql('INSERT INTO u (k) VALUES (?)'), [1]); // unique violation
            }),
          );
          assert.deepEqual(await db.query('SELECT k FROM u'), [{ k: 1 }]);
        });
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('statements outside a request borrow a connection for that statement only', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        const result = await db.run(sql('INSERT INTO t (v) VALUES (?)'), [7]);
        assert.equal(result.changes, 1);
        if (kind.database === 'sqlite') assert.equal(result.lastInsertId, 1);
        assert.equal(db.stats().inUse, 0);
        assert.deepEqual(await db.get('SELECT v FROM t'), { v: 7 });
        assert.equal(await db.get(sql('SELECT v FROM t WHERE v = ?'), [8]), undefined);
        assert.deepEqual(await db.query('SELECT v FROM t'), [{ v: 7 }]);
        // atomic() outside a request borrows one connection for the whole transaction.
        await db.atomic(async () => {
          assert.equal(db.stats().inUse, 1);
          await db.run(sql('INSERT INTO t (v) VALUES (?)'), [8]);
          assert.equal(db.stats().inUse, 1);
        });
        assert.equal(db.stats().inUse, 0);
        await assert.rejects(db.get('SELECT nope FROM t'));
        assert.equal(db.stats().inUse, 0, 'a failing statement returns its connection too');
        assert.deepEqual(db.stats().waiting, 0);
      });
    });

    test('a request checks out at its first statement and keeps that connection (lazy)', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        const acquired = recordAcquires(db);
        const ran = recordStatements(db);
        const scope = createScope(db);
        await scope.run(async () => {
          assert.equal(db.isClosed(), true, 'no connection before the first statement');
          assert.equal(db.stats().inUse, 0);
          await db.run(sql('INSERT INTO t (v) VALUES (?)'), [1]);
          assert.equal(db.isClosed(), false, 'the first statement checked one out');
          assert.equal(db.stats().inUse, 1);
          await db.atomic(async () => {
            await db.run(sql('INSERT INTO t (v) VALUES (?)'), [2]);
          });
          await db.get('SELECT 1 AS one');
          assert.equal(db.stats().inUse, 1);
        });
        assert.equal(db.stats().inUse, 1, 'held until the scope is released');
        await scope.release();
        assert.equal(db.stats().inUse, 0);
        assert.equal(acquired.length, 1, 'one checkout for the whole request');
        assert.ok(ran.length >= 3, `${ran.length} statements recorded`);
        assert.ok(
          ran.every((r) => r.conn === acquired[0]),
          'every statement on that connection',
        );
        assert.equal((await db.query('SELECT v FROM t')).length, 2);
      });
    });

    test('after db.close() a request borrows per statement and per transaction', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        const scope = createScope(db);
        await scope.run(async () => {
          await db.get('SELECT 1 AS one');
          assert.equal(await db.close(), true);
          assert.equal(db.stats().inUse, 0);
          await db.run(sql('INSERT INTO t (v) VALUES (?)'), [1]);
          assert.equal(db.stats().inUse, 0, 'the statement returned its connection');
          assert.equal(db.isClosed(), true);
          await db.atomic(async () => {
            assert.equal(db.isClosed(), false);
            assert.equal(db.stats().inUse, 1);
            await db.run(sql('INSERT INTO t (v) VALUES (?)'), [2]);
          });
          // atomic() binds a connection to the request again, as db.connect() would.
          assert.equal(db.stats().inUse, 1);
        });
        await scope.release();
        assert.equal(db.stats().inUse, 0);
        assert.equal((await db.query('SELECT v FROM t')).length, 2);
      });
    });
  });
}
