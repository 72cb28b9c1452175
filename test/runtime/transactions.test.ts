// db.atomic()'s options (isolation level, access mode, retries on serialization failures) and
// db.onCommit(), on every database. Conflicts are made by order, not by timing: blocks wait at a
// barrier until all of them have read before any writes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ConnectionStateError,
  createScope,
  currentScope,
  ScopeReleasedError,
} from '../../src/runtime/runtime.ts';
import {
  capturingLogger,
  kinds,
  mysqlSkipReason,
  openMysql,
  openPostgres,
  recordAcquires,
  recordStatements,
  tick,
  waitFor,
  withDatabase,
} from './databases.ts';

/** Resolves once `count` callers have arrived. */
function barrier(count: number): () => Promise<void> {
  let arrived = 0;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return () => {
    if (++arrived === count) open();
    return opened;
  };
}

describe('postgres: db.atomic() options', () => {
  test('isolation level, read only and deferrable begin the transaction', async () => {
    const { db, cleanup } = await openPostgres();
    try {
      const show = async (name: string) =>
        (await db.get<Record<string, string>>(`SHOW ${name}`))![name];
      assert.equal(await db.atomic(() => show('transaction_isolation')), 'read committed');
      const seen = await db.atomic(
        async () => [
          await show('transaction_isolation'),
          await show('transaction_read_only'),
          await show('transaction_deferrable'),
        ],
        { isolationLevel: 'serializable', readOnly: true, deferrable: true },
      );
      assert.deepEqual(seen, ['serializable', 'on', 'on']);
      assert.equal(
        await db.atomic(() => show('transaction_isolation'), { isolationLevel: 'repeatable read' }),
        'repeatable read',
      );
      await db.run('CREATE TABLE t (v integer)');
      await assert.rejects(
        db.atomic(() => db.run('INSERT INTO t VALUES (1)'), { readOnly: true }),
        (error: { code?: string }) => error.code === '25006', // read_only_sql_transaction
      );
      assert.equal(db.stats().inUse, 0);
    } finally {
      await cleanup();
    }
  });

  test('SERIALIZABLE: 10 conflicting blocks all commit through retries, each seeing its attempt', async () => {
    const { db, cleanup } = await openPostgres({ max: 10 });
    try {
      await db.run('CREATE TABLE counter (n integer NOT NULL)');
      await db.run('INSERT INTO counter VALUES (0)');
      const allRead = barrier(10);
      const attempts: number[] = [];
      const increment = async () => {
        const scope = createScope(db);
        try {
          return await scope.run(() =>
            db.atomic(
              async (attempt) => {
                attempts.push(attempt);
                const { n } = (await db.get<{ n: number }>('SELECT n FROM counter'))!;
                if (attempt === 1) await allRead(); // every first attempt read the same n
                await db.run('UPDATE counter SET n = $1', [n + 1]);
                return attempt;
              },
              { isolationLevel: 'serializable', retries: 10 },
            ),
          );
        } finally {
          await scope.release();
        }
      };
      const finals = await Promise.all(Array.from({ length: 10 }, increment));
      assert.equal((await db.get<{ n: number }>('SELECT n FROM counter'))!.n, 10);
      assert.ok(Math.max(...finals) > 1, `some block ran again: ${finals}`);
      assert.equal(finals.filter((attempt) => attempt === 1).length, 1, 'one first attempt won');
      assert.equal(
        attempts.length,
        finals.reduce((sum, attempt) => sum + attempt, 0),
      );
      assert.equal(db.stats().inUse, 0);
    } finally {
      await cleanup();
    }
  });

  test('a block that caught a failed statement does not count as committed', async () => {
    const { db, cleanup } = await openPostgres();
    try {
      await db.run('CREATE TABLE t (v integer)');
      const ran: string[] = [];
      await assert.rejects(
        db.atomic(async () => {
          await db.run('INSERT INTO t VALUES (1)');
          db.onCommit(() => ran.push('hook'));
          await db.run('SELECT * FROM no_such_table').catch(() => {});
        }),
        (error: { code?: string }) => error.code === 'TRANSACTION_FAILED',
      );
      await tick();
      assert.deepEqual(ran, []);
      assert.equal(Number((await db.get<{ n: string }>('SELECT count(*) AS n FROM t'))!.n), 0);
    } finally {
      await cleanup();
    }
  });

  test('without retries the conflict fails with 40001; other errors are never retried', async () => {
    const { db, cleanup } = await openPostgres({ max: 4 });
    try {
      await db.run('CREATE TABLE counter (n integer NOT NULL)');
      await db.run('INSERT INTO counter VALUES (0)');
      const allRead = barrier(2);
      const increment = () =>
        db.atomic(
          async () => {
            const { n } = (await db.get<{ n: number }>('SELECT n FROM counter'))!;
            await allRead();
            await db.run('UPDATE counter SET n = $1', [n + 1]);
          },
          { isolationLevel: 'repeatable read' },
        );
      const results = await Promise.allSettled([increment(), increment()]);
      const failed = results.filter((result) => result.status === 'rejected');
      assert.equal(failed.length, 1);
      assert.equal((failed[0]!.reason as { code?: string }).code, '40001');

      let runs = 0;
      await assert.rejects(
        db.atomic(
          async () => {
            runs++;
            throw new Error('not a conflict');
          },
          { retries: 5 },
        ),
        /not a conflict/,
      );
      assert.equal(runs, 1);
    } finally {
      await cleanup();
    }
  });
});

describe('mysql: db.atomic() options', { skip: mysqlSkipReason }, () => {
  test('SERIALIZABLE: 10 conflicting blocks all commit through retries of their deadlocks', async () => {
    const { db, cleanup } = await openMysql({ max: 10 });
    try {
      await db.run('CREATE TABLE counter (n integer NOT NULL) ENGINE=InnoDB');
      await db.run('INSERT INTO counter VALUES (0)');
      const allRead = barrier(10);
      const increment = () =>
        db.atomic(
          async (attempt) => {
            // SERIALIZABLE reads take shared locks: ten readers' updates deadlock.
            const { n } = (await db.get<{ n: number }>('SELECT n FROM counter'))!;
            if (attempt === 1) await allRead();
            await db.run('UPDATE counter SET n = ?', [n + 1]);
            return attempt;
          },
          { isolationLevel: 'serializable', retries: 20 },
        );
      const finals = await Promise.all(Array.from({ length: 10 }, increment));
      assert.equal((await db.get<{ n: number }>('SELECT n FROM counter'))!.n, 10);
      assert.ok(Math.max(...finals) > 1, `some block ran again: ${finals}`);
      assert.equal(db.stats().inUse, 0);
    } finally {
      await cleanup();
    }
  });

  test('a block that caught its deadlock does not count as committed; deferrable is refused', async () => {
    const { db, cleanup } = await openMysql({ max: 4 });
    try {
      await db.run('CREATE TABLE counter (n integer NOT NULL) ENGINE=InnoDB');
      await db.run('INSERT INTO counter VALUES (0)');
      const allRead = barrier(2);
      const ran: string[] = [];
      const increment = (name: string) =>
        db.atomic(
          async () => {
            const { n } = (await db.get<{ n: number }>('SELECT n FROM counter'))!;
            await allRead();
            db.onCommit(() => ran.push(name));
            await db.run('UPDATE counter SET n = ?', [n + 1]).catch(() => {});
          },
          { isolationLevel: 'serializable' },
        );
      const results = await Promise.allSettled([increment('a'), increment('b')]);
      const failed = results.filter((result) => result.status === 'rejected');
      assert.equal(failed.length, 1, JSON.stringify(results));
      assert.equal((failed[0]!.reason as { code?: string }).code, 'TRANSACTION_FAILED');
      await tick();
      assert.equal(ran.length, 1, 'only the committed block ran its hook');
      assert.equal((await db.get<{ n: number }>('SELECT n FROM counter'))!.n, 1);
      await assert.rejects(
        db.atomic(async () => {}, { deferrable: true }),
        /MySQL has no deferrable transactions/,
      );
      await assert.rejects(
        db.atomic(() => db.run('UPDATE counter SET n = 5'), { readOnly: true }),
        (error: { errno?: number }) => error.errno === 1792, // read-only transaction
      );
    } finally {
      await cleanup();
    }
  });
});

for (const kind of kinds) {
  describe(`${kind.name}: db.atomic() options and db.onCommit()`, () => {
    test('options are refused inside an outer transaction, and checked before anything runs', async () => {
      await withDatabase(kind, {}, async ({ db }) => {
        await db.connectionContext(() =>
          db.atomic(async () => {
            for (const options of [
              { isolationLevel: 'serializable' as const },
              { retries: 3 },
              { readOnly: false },
            ]) {
              await assert.rejects(
                db.atomic(async () => {}, options),
                (error: Error) =>
                  error instanceof ConnectionStateError && /savepoint/.test(error.message),
              );
            }
            assert.equal(await db.atomic(async (attempt) => attempt), 1, 'a plain savepoint');
          }),
        );
        let ran = false;
        const run = async () => {
          ran = true;
        };
        await assert.rejects(
          db.atomic(run, { isolationLevel: 'snapshot' as never }),
          /isolationLevel "snapshot" is not one of/,
        );
        await assert.rejects(db.atomic(run, { retries: -1 }), /retries must be/);
        if (kind.database === 'sqlite') {
          for (const option of ['readOnly', 'deferrable'] as const) {
            await assert.rejects(
              db.atomic(run, { [option]: true }),
              new RegExp(`SQLite has no ${option} transactions`),
            );
          }
          // Serializable already: every level is satisfied.
          await db.atomic(async () => {}, { isolationLevel: 'read committed', retries: 2 });
        }
        assert.equal(ran, false);
        assert.equal(db.stats().inUse, 0);
      });
    });

    test('onCommit: after the outermost commit, outside the scope; dropped with what rolls back', async () => {
      await withDatabase(kind, {}, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        const insert = sql('INSERT INTO t (v) VALUES (?)');
        const ran: string[] = [];
        const seen: Record<string, unknown> = {};
        const scope = createScope(db);
        await scope.run(async () => {
          await db.atomic(async () => {
            await db.run(insert, [1]);
            db.onCommit(async () => {
              ran.push('outer');
              seen.otherScope = currentScope(db) !== scope;
              // Its own connection sees the commit.
              seen.count = Number((await db.get<{ n: unknown }>('SELECT count(*) AS n FROM t'))!.n);
            });
            await db.atomic(async () => {
              db.onCommit(() => ran.push('released savepoint'));
            });
            await assert.rejects(
              db.atomic(async () => {
                db.onCommit(() => ran.push('rolled-back savepoint'));
                await db.atomic(async () => {
                  db.onCommit(() => ran.push('inside the rolled-back savepoint'));
                });
                throw new Error('inner');
              }),
              /inner/,
            );
            assert.deepEqual(ran, [], 'nothing before the commit');
          });
          await assert.rejects(
            db.atomic(async () => {
              db.onCommit(() => ran.push('rolled back'));
              await db.atomic(async () => {
                db.onCommit(() => ran.push('savepoint of a rolled-back transaction'));
              });
              throw new Error('outer');
            }),
            /outer/,
          );
        });
        await scope.release();
        await waitFor(() => ran.length >= 2);
        await tick();
        assert.deepEqual(ran, ['outer', 'released savepoint']);
        assert.deepEqual(seen, { otherScope: true, count: 1 });
      });
    });

    test('onCommit outside a transaction runs at once; a failing hook is logged, the next one runs', async () => {
      const logger = capturingLogger();
      await withDatabase(kind, { logger }, async ({ db }) => {
        const ran: string[] = [];
        const scope = createScope(db);
        await scope.run(async () => {
          db.onCommit(() => ran.push('at once'));
          assert.deepEqual(ran, ['at once'], 'before onCommit() returned');
          await db.atomic(async () => {
            db.onCommit(() => {
              throw new Error('hook failed');
            });
            db.onCommit(() => ran.push('after the failure'));
          });
        });
        await scope.release();
        await waitFor(() => ran.length === 2);
        assert.equal(logger.errors.length, 1);
        assert.match(
          logger.errors[0]!,
          /onCommit\(\) callback failed after its commit.*hook failed/s,
        );
      });
    });

    test('onCommit never runs when the client leaves mid-transaction', async () => {
      await withDatabase(kind, {}, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        const ran: string[] = [];
        const scope = createScope(db);
        let inside!: () => void;
        const reached = new Promise<void>((resolve) => {
          inside = resolve;
        });
        let resume!: () => void;
        const resumed = new Promise<void>((resolve) => {
          resume = resolve;
        });
        const block = scope.run(() =>
          db.atomic(async () => {
            await db.run(sql('INSERT INTO t (v) VALUES (?)'), [1]);
            db.onCommit(() => ran.push('left'));
            inside();
            await resumed;
          }),
        );
        await reached;
        const released = scope.release('client-gone');
        resume();
        await assert.rejects(block, ScopeReleasedError);
        await released;
        await tick();
        assert.deepEqual(ran, []);
        assert.equal(Number((await db.get<{ n: number }>('SELECT count(*) AS n FROM t'))!.n), 0);
        assert.equal(db.stats().inUse, 0);
      });
    });
  });
}

for (const kind of kinds) {
  describe(`${kind.name}: a request's own transaction (the adapters' atomic)`, () => {
    test('lazy: a request that never queries checks nothing out and begins nothing', async () => {
      await withDatabase(kind, {}, async ({ db }) => {
        const acquired = recordAcquires(db);
        const ran = recordStatements(db);
        const scope = createScope(db);
        scope.transact(true);
        const hooks: string[] = [];
        await scope.run(async () => {
          db.onCommit(() => hooks.push('no query'));
        });
        assert.deepEqual(hooks, [], 'waits for the end of the request');
        await scope.endTransaction(200);
        await scope.release();
        assert.deepEqual(hooks, ['no query']);
        assert.equal(acquired.length, 0);
        assert.deepEqual(ran, []);
      });
    });

    test('concurrent first statements share one BEGIN; atomic() is a savepoint; the status decides', async () => {
      await withDatabase(kind, {}, async ({ db, sql }) => {
        await db.run('CREATE TABLE t (v integer)');
        const insert = sql('INSERT INTO t (v) VALUES (?)');
        const count = async () =>
          Number((await db.get<{ n: unknown }>('SELECT count(*) AS n FROM t'))!.n);
        const ran = recordStatements(db);
        const request = async (status: number, body: () => Promise<void>) => {
          const scope = createScope(db);
          scope.transact(true);
          await scope.run(body);
          await scope.endTransaction(status);
          await scope.release();
        };
        await request(200, async () => {
          await Promise.all([db.run(insert, [1]), db.run(insert, [2])]);
          await assert.rejects(
            db.atomic(async () => {
              await db.run(insert, [3]);
              throw new Error('inner');
            }),
            /inner/,
          );
          await assert.rejects(
            db.atomic(async () => {}, { isolationLevel: 'serializable' }),
            ConnectionStateError,
          );
        });
        const sqls = ran.map((statement) => statement.sql);
        assert.equal(
          sqls.filter((text) => /^(BEGIN|START TRANSACTION)\b/.test(text)).length,
          kind.database === 'sqlite' ? 0 : 1, // SQLite's BEGIN is not a statement of execute()
        );
        assert.ok(sqls.includes('SAVEPOINT db_hooks_1'), sqls.join('; '));
        assert.equal(await count(), 2, 'committed, without the rolled-back savepoint');

        await request(500, () => db.run(insert, [4]).then(() => {}));
        assert.equal(await count(), 2, 'a 500 rolls back');
        await request(500, async () => {
          await db.run(insert, [5]);
          db.setRollback(false);
        });
        assert.equal(await count(), 3, 'setRollback(false) commits a 500');
        await request(200, async () => {
          await db.run(insert, [6]);
          db.setRollback(true);
        });
        assert.equal(await count(), 3, 'setRollback(true) rolls back a 200');
        assert.throws(() => db.setRollback(true), ConnectionStateError);
        assert.equal(db.stats().inUse, 0);
      });
    });
  });
}
