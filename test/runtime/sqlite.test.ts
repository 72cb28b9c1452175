// SQLite specifics: better-sqlite3 is synchronous, so concurrent write transactions that await
// must take turns without ever reaching SQLite's busy handler (which would block the event loop).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { createScope, PoolClosedError } from '../../src/runtime/runtime.ts';
import { SqliteDatabase } from '../../src/runtime/runtime-sqlite.ts';
import { capturingLogger, openSqlite, settlesWithin, sleep, tick } from './databases.ts';

// Commits fsync synchronously (better-sqlite3 has no other way), and on a busy disk one fsync
// can take ~100 ms, which is not what this test measures: use a RAM-backed directory if any.
const RAM_DIR = existsSync('/dev/shm') ? '/dev/shm' : undefined;

test('sqlite: 500 concurrent write transactions with awaits inside never reach the busy handler', async () => {
  // No busy timeout: a statement that found the database locked, which would block the event
  // loop in SQLite's busy handler, fails at once with SQLITE_BUSY instead.
  const { db: slow, cleanup } = await openSqlite({
    parentDir: RAM_DIR,
    max: 8,
    acquireTimeoutMillis: 20_000,
    writeTimeoutMillis: 20_000,
    timeout: 0,
  });
  try {
    await slow.run('CREATE TABLE accounts (id integer PRIMARY KEY, balance integer NOT NULL)');
    await slow.atomic(async () => {
      for (let id = 0; id < 10; id++) {
        await slow.run('INSERT INTO accounts (id, balance) VALUES (?, 1000)', [id]);
      }
    });
    const results = await Promise.allSettled(
      Array.from({ length: 500 }, async (_, i) => {
        const scope = createScope(slow);
        try {
          await scope.connect();
          return await scope.run(async () => {
            if (i % 4 === 3) {
              // A reader on its own connection, while transactions are open elsewhere.
              await tick();
              const row = await slow.get<{ total: number }>(
                'SELECT sum(balance) AS total FROM accounts',
              );
              assert.equal(row!.total, 10_000, 'a reader saw a half-done transfer');
              return;
            }
            // A transfer between two accounts, with awaits between its statements.
            const from = i % 10;
            const to = (i * 7 + 3) % 10;
            await slow.atomic(async () => {
              await slow.run('UPDATE accounts SET balance = balance - 1 WHERE id = ?', [from]);
              await tick();
              await sleep(0);
              await slow.run('UPDATE accounts SET balance = balance + 1 WHERE id = ?', [to]);
            });
            // Single write statements outside a transaction take turns too.
            await slow.run('UPDATE accounts SET balance = balance WHERE id = ?', [to]);
          });
        } finally {
          await scope.release();
        }
      }),
    );
    const failures = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(failures, [], 'no SQLITE_BUSY, no timeouts');
    const total = await slow.get<{ total: number }>('SELECT sum(balance) AS total FROM accounts');
    assert.equal(total!.total, 10_000);
    assert.equal(slow.stats().inUse, 0);
  } finally {
    await cleanup();
  }
});

test('sqlite: a transaction holding the write lock too long makes the next writer time out', async () => {
  const logger = capturingLogger();
  const { db, cleanup } = await openSqlite({ max: 2, writeTimeoutMillis: 200, logger });
  try {
    await db.run('CREATE TABLE t (v integer)');
    let finish!: () => void;
    const long = db.atomic(async () => {
      await db.run('INSERT INTO t (v) VALUES (1)');
      await new Promise<void>((resolve) => {
        finish = resolve;
      });
    });
    await sleep(10);
    const started = performance.now();
    const write = db.run('INSERT INTO t (v) VALUES (2)');
    assert.ok(await settlesWithin(write, 200 * 10), 'still waiting past writeTimeoutMillis');
    await assert.rejects(write, { code: 'POOL_TIMEOUT', status: 503 });
    const ms = performance.now() - started;
    // The advice is for the operator, in the log; the client is told to try again.
    assert.equal(logger.errors.length, 1);
    assert.match(logger.errors[0]!, /write transaction/);
    assert.match(logger.errors[0]!, /db\.atomic\(\) blocks short/);
    assert.ok(ms >= 180, `timed out after ${ms} ms`);
    // Reads never wait for the writer, and do not see its uncommitted row.
    assert.deepEqual(await db.query('SELECT v FROM t'), []);
    finish();
    await long;
    await db.run('INSERT INTO t (v) VALUES (3)');
    assert.deepEqual(await db.query('SELECT v FROM t ORDER BY v'), [{ v: 1 }, { v: 3 }]);
    assert.equal(db.stats().inUse, 0);
  } finally {
    await cleanup();
  }
});

test("sqlite: named parameters, RETURNING, and ':memory:' shares one connection", async () => {
  const db = new SqliteDatabase({ path: ':memory:', max: 5 });
  try {
    await db.run('CREATE TABLE t (id integer PRIMARY KEY, name text)');
    const inserted = await db.get<{ id: number }>(
      'INSERT INTO t (name) VALUES (@name) RETURNING id',
      { name: 'ada' },
    );
    assert.deepEqual(inserted, { id: 1 });
    assert.deepEqual(await db.query('SELECT name FROM t WHERE id = ?', [1]), [{ name: 'ada' }]);
    // A write through query() (no rows) still takes the write path.
    assert.deepEqual(await db.query('DELETE FROM t WHERE id = ?', [1]), []);
    assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
  } finally {
    await db.closePool();
  }
});

test('sqlite: a forced closePool() with writers queued behind a transaction: all get PoolClosedError', async () => {
  const logger = capturingLogger();
  const options = { max: 3, closeTimeoutMillis: 200, acquireTimeoutMillis: 3000, logger };
  const { db, cleanup } = await openSqlite(options);
  try {
    await db.run('CREATE TABLE t (v integer)');
    const [a, b, c] = [createScope(db, 'A'), createScope(db, 'B'), createScope(db, 'C')];
    let resume!: () => void;
    const transaction = a.run(() =>
      db.atomic(async () => {
        await db.run('INSERT INTO t (v) VALUES (1)');
        // Still open when the pool is closed: it goes on only once closePool() has returned.
        await new Promise<void>((resolve) => {
          resume = resolve;
        });
        await db.run('INSERT INTO t (v) VALUES (2)');
      }),
    );
    await sleep(10);
    await b.run(() => db.get('SELECT 1 AS one')); // b holds a connection
    const write = b.run(() => db.run('INSERT INTO t (v) VALUES (3)')); // waits for the lock
    const queued = c.run(() => db.atomic(() => db.run('INSERT INTO t (v) VALUES (4)'))); // its turn
    for (const outcome of [transaction, write, queued]) outcome.catch(() => {});
    await sleep(10);
    const started = performance.now();
    const closing = db.closePool();
    assert.ok(await settlesWithin(closing, 200 * 10), 'closePool() waited past its timeout');
    const ms = performance.now() - started;
    assert.ok(ms >= 180, `closePool took ${ms} ms`);
    resume();
    for (const outcome of [transaction, write, queued]) {
      await assert.rejects(outcome, (error: unknown) => {
        assert.ok(error instanceof PoolClosedError, `got ${String(error)}`);
        return true;
      });
    }
    await Promise.all([a.release(), b.release(), c.release()]);
    assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
    assert.deepEqual(logger.errors, []);
  } finally {
    await cleanup();
  }
});
