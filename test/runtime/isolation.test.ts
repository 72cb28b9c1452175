// Concurrency on both databases: many requests interleaving transactions never see each other's
// uncommitted rows, every transaction lands whole or not at all, and nothing leaks.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { createScope, ScopeReleasedError } from '../../src/runtime/runtime.ts';
import { kinds, sleep, tick, withDatabase } from './databases.ts';

const REQUESTS = 1000;

for (const kind of kinds) {
  describe(`${kind.name}: isolation and leaks`, () => {
    test(`${REQUESTS} concurrent requests interleave transactions without seeing each other`, async () => {
      await withDatabase(kind, { max: 20, acquireTimeoutMillis: 30_000 }, async ({ db, sql }) => {
        await db.run('CREATE TABLE items (owner integer NOT NULL, n integer NOT NULL)');
        const insert = sql('INSERT INTO items (owner, n) VALUES (?, ?)');
        // Rows of other owners whose transaction is half done: never visible from outside it.
        const partial = sql(
          'SELECT count(*) AS c FROM (SELECT owner FROM items WHERE owner <> ? ' +
            'GROUP BY owner HAVING count(*) <> 2) AS p',
        );
        const mine = sql('SELECT count(*) AS c FROM items WHERE owner = ?');
        const violations: string[] = [];

        async function request(i: number): Promise<'committed' | 'rolled back'> {
          const scope = createScope(db);
          try {
            return await scope.run(async () => {
              await db.connect();
              await (i % 2 ? tick() : sleep(0));
              try {
                await db.atomic(async () => {
                  await db.run(insert, [i, 1]);
                  await (i % 2 ? sleep(0) : tick());
                  const seen = await db.get<{ c: number | string }>(partial, [i]);
                  if (Number(seen!.c) !== 0)
                    violations.push(`request ${i} saw a partial transaction`);
                  const own = await db.get<{ c: number | string }>(mine, [i]);
                  if (Number(own!.c) !== 1) violations.push(`request ${i} did not see its own row`);
                  if (i % 5 === 0) {
                    // A savepoint that fails: its row must vanish, the outer part must stay.
                    await db
                      .atomic(async () => {
                        await db.run(insert, [i, 99]);
                        await tick();
                        throw new Error('inner');
                      })
                      .catch(() => {});
                  }
                  await tick();
                  await db.run(insert, [i, 2]);
                  if (i % 3 === 0) throw new Error('roll back');
                });
                return 'committed';
              } catch (error) {
                if ((error as Error).message !== 'roll back') throw error;
                return 'rolled back';
              }
            });
          } finally {
            await scope.release();
          }
        }

        const outcomes = await Promise.all(Array.from({ length: REQUESTS }, (_, i) => request(i)));
        assert.deepEqual(violations, []);
        const committed = outcomes.filter((o) => o === 'committed').length;
        assert.equal(committed, REQUESTS - Math.ceil(REQUESTS / 3));
        const total = await db.get<{ c: number | string }>('SELECT count(*) AS c FROM items');
        assert.equal(Number(total!.c), committed * 2);
        const perOwner = await db.query<{ owner: number; c: number | string }>(
          'SELECT owner, count(*) AS c FROM items GROUP BY owner',
        );
        for (const row of perOwner) {
          assert.equal(Number(row.c), 2, `owner ${row.owner}`);
          assert.notEqual(row.owner % 3, 0, `owner ${row.owner} should have rolled back`);
        }
        const savepointRows = await db.get<{ c: number | string }>(
          'SELECT count(*) AS c FROM items WHERE n = 99',
        );
        assert.equal(Number(savepointRows!.c), 0);
        assert.equal(db.stats().inUse, 0);
        assert.equal(db.stats().waiting, 0);
      });
    });

    test('requests that throw, abandon transactions or close twice leak nothing', async () => {
      await withDatabase(kind, { max: 5 }, async ({ db, sql, url }) => {
        await db.run('CREATE TABLE t (v integer)');
        const insert = sql('INSERT INTO t (v) VALUES (?)');
        const handlers: Array<() => unknown> = [
          // Throws synchronously after starting a query.
          () => {
            void db.query('SELECT 1 AS one').catch(() => {});
            throw new Error('sync');
          },
          // Throws asynchronously inside a transaction.
          async () => {
            await db.atomic(async () => {
              await db.run(insert, [1]);
              throw new Error('async');
            });
          },
          // peewee style, closing twice.
          async () => {
            await db.connect();
            await db.run(insert, [2]);
            assert.equal(await db.close(), true);
            assert.equal(await db.close(), false);
          },
          // Abandons a transaction: the response ends while the transaction waits.
          async () => {
            await db.atomic(async () => {
              await db.run(insert, [3]);
              await sleep(50);
            });
          },
        ];
        const abandoned: Promise<unknown>[] = [];
        for (let round = 0; round < 10; round++) {
          for (const [index, handler] of handlers.entries()) {
            const scope = createScope(db);
            // The peewee-style handler connects itself; the others get an eager connection.
            if (index !== 2) await scope.connect();
            try {
              if (index === 3) {
                // Keep the transaction's outcome; release without awaiting it.
                const outcome = Promise.resolve(scope.run(handler));
                abandoned.push(
                  outcome.then(
                    () => 'resolved',
                    (error: unknown) => error,
                  ),
                );
                await sleep(5);
              } else {
                await scope.run(handler);
              }
            } catch (error) {
              // The adapter would turn these into error responses; anything else is a bug.
              assert.match((error as Error).message, /^(sync|async)$/);
            } finally {
              await scope.release();
              await scope.release(); // double release from 'finish' and 'close'
            }
          }
        }
        for (const outcome of await Promise.all(abandoned)) {
          assert.ok(outcome instanceof ScopeReleasedError, `got ${String(outcome)}`);
        }
        await sleep(20);
        assert.equal(db.stats().inUse, 0);
        assert.equal(db.stats().waiting, 0);
        // Only the peewee-style inserts (v = 2) were committed.
        const rows = await db.query<{ v: number }>('SELECT v FROM t');
        assert.equal(rows.length, 10);
        assert.ok(
          rows.every((r) => r.v === 2),
          'rows.every((r) => r.v === 2)',
        );
        if (url) {
          const admin = new pg.Client({ connectionString: url });
          await admin.connect();
          const { rows: activity } = await admin.query<{ state: string | null }>(
            'SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
          );
          await admin.end();
          assert.ok(activity.length > 0, 'the pool keeps idle connections');
          assert.deepEqual(
            activity.filter((a) => a.state?.startsWith('idle in transaction')),
            [],
          );
          assert.ok(
            activity.every((a) => a.state === 'idle'),
            "activity.every((a) => a.state === 'idle')",
          );
        }
      });
    });
  });
}
