// SQLite readers and queued writers: a request waiting for its turn to write must not hold one
// of the pool's connections meanwhile, or 20 queued writers starve every reader of a pool of 10.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createScope } from '../../src/runtime/runtime.ts';
import { openSqlite, sleep, sqliteDrivers } from './databases.ts';

for (const driver of sqliteDrivers) {
  test(`${driver}: writers queued behind a transaction hold no connection; readers go on`, async () => {
    const { db, cleanup } = await openSqlite({ driver, max: 10, acquireTimeoutMillis: 5000 });
    try {
      await db.run('CREATE TABLE t (v integer)');
      // One request holds the write lock across an await, as a slow transaction does.
      let finish!: () => void;
      const holding = new Promise<void>((resolve) => {
        finish = resolve;
      });
      const holder = createScope(db, 'holder');
      const held = holder.run(() =>
        db.atomic(async () => {
          await db.run('INSERT INTO t (v) VALUES (1)');
          await holding;
        }),
      );
      await sleep(20);
      // 20 more requests each start a transaction: they queue for the write lock.
      const writers = Array.from({ length: 20 }, (_, i) => {
        const scope = createScope(db, `writer ${i}`);
        return scope
          .run(() => db.atomic(() => db.run('INSERT INTO t (v) VALUES (2)')))
          .finally(() => scope.release());
      });
      await sleep(50);
      assert.equal(db.stats().inUse, 1, 'queued writers took connections while they waited');

      // Readers are served at once: the nine connections the holder leaves, all at the same time.
      // Readers that waited for the writers would wait for finish() below: they would fail with
      // PoolTimeoutError instead.
      const readers = Array.from({ length: 9 }, () => createScope(db, 'reader'));
      const counts = await Promise.all(
        readers.map((scope) =>
          scope.run(() => db.get<{ n: number }>('SELECT count(*) AS n FROM t')),
        ),
      );
      assert.deepEqual(
        counts.map((row) => row?.n),
        Array(9).fill(0),
        'readers saw an uncommitted write',
      );
      await Promise.all(readers.map((scope) => scope.release()));

      finish();
      await held;
      await holder.release();
      await Promise.all(writers);
      assert.deepEqual(await db.get('SELECT count(*) AS n FROM t'), { n: 21 });
      assert.deepEqual(db.stats().inUse, 0);
    } finally {
      await cleanup();
    }
  });
}
