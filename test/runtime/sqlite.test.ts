// SQLite specifics: better-sqlite3 is synchronous, so concurrent write transactions that await
// must take turns without ever reaching SQLite's busy handler (which would block the event loop).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  createScope,
  DatabaseUnavailableError,
  PoolClosedError,
} from '../../src/runtime/runtime.ts';
import {
  capturingLogger,
  newSqlite,
  openSqlite,
  settlesWithin,
  sleep,
  sqliteDrivers,
  tick,
} from './databases.ts';

// Commits fsync synchronously (better-sqlite3 has no other way), and on a busy disk one fsync
// can take ~100 ms, which is not what this test measures: use a RAM-backed directory if any.
const RAM_DIR = existsSync('/dev/shm') ? '/dev/shm' : undefined;

for (const driver of sqliteDrivers) {
  test(`${driver}: 500 concurrent write transactions with awaits inside never reach the busy handler`, async () => {
    // No busy timeout: a statement that found the database locked, which would block the event
    // loop in SQLite's busy handler, fails at once with SQLITE_BUSY instead.
    const { db: slow, cleanup } = await openSqlite({
      driver,
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

  test(`${driver}: a transaction holding the write lock too long makes the next writer time out`, async () => {
    const logger = capturingLogger();
    const { db, cleanup } = await openSqlite({ driver, max: 2, writeTimeoutMillis: 200, logger });
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

  test(`${driver}: named parameters, RETURNING, and ':memory:' shares one connection`, async () => {
    const db = newSqlite(driver, { path: ':memory:', max: 5 });
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

  test(`${driver}: a forced closePool() with writers queued behind a transaction: all get PoolClosedError`, async () => {
    const logger = capturingLogger();
    const options = { driver, max: 3, closeTimeoutMillis: 200, acquireTimeoutMillis: 3000, logger };
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

  test(`${driver}: a statement that writes waits for the write turn, whatever it returns; reads never wait`, async () => {
    // timeout 0: a write that skipped its turn would meet SQLite's lock and fail at once.
    const { db, cleanup } = await openSqlite({ driver, max: 4, timeout: 0 });
    try {
      await db.run('CREATE TABLE t (id integer PRIMARY KEY, v integer)');
      const writes = [
        ['INSERT ... RETURNING', 'get', 'INSERT INTO t (v) VALUES (1) RETURNING id'],
        ['WITH ... INSERT', 'run', 'WITH x(v) AS (SELECT 2) INSERT INTO t (v) SELECT v FROM x'],
        ['UPDATE ... RETURNING', 'query', 'UPDATE t SET v = v + 10 WHERE v = 1 RETURNING v'],
        ['DELETE ... RETURNING', 'query', 'DELETE FROM t WHERE v = 2 RETURNING id'],
        ['REPLACE', 'run', 'REPLACE INTO t (id, v) VALUES (100, 3)'],
        ['a pragma that writes the file', 'run', 'PRAGMA user_version = 7'],
      ] as const;
      for (const [name, method, sql] of writes) {
        const events: string[] = [];
        let finish!: () => void;
        const holding = new Promise<void>((resolve) => {
          finish = resolve;
        });
        const holder = createScope(db, 'holder');
        const held = holder.run(() =>
          db.atomic(async () => {
            await db.run('INSERT INTO t (v) VALUES (0)');
            await holding;
            events.push('transaction ends');
          }),
        );
        await sleep(10);
        const writer = createScope(db, 'writer');
        const written = writer
          .run(() => (db[method] as (sql: string) => Promise<unknown>)(sql))
          .then(() => events.push(`${name} ran`));
        const reader = createScope(db, 'reader');
        await reader.run(() => db.query('SELECT v FROM t'));
        events.push('read ran');
        await sleep(20);
        finish();
        await Promise.all([held, written]);
        await Promise.all([holder.release(), writer.release(), reader.release()]);
        assert.deepEqual(events, ['read ran', 'transaction ends', `${name} ran`], name);
      }
      assert.deepEqual(await db.get('PRAGMA user_version'), { user_version: 7 });
      assert.equal(db.stats().inUse, 0);
    } finally {
      await cleanup();
    }
  });

  test(`${driver}: one statement per string, rows as plain objects or arrays`, async () => {
    const { db, cleanup } = await openSqlite({ driver });
    try {
      await db.run('CREATE TABLE t (id integer PRIMARY KEY, v text)');
      await assert.rejects(
        db.run("INSERT INTO t (v) VALUES ('a'); DELETE FROM t"),
        /more than one statement/,
      );
      // A trailing semicolon and comment are still one statement.
      await db.run("INSERT INTO t (v) VALUES ('b'); -- the only one");
      const row = await db.get('SELECT id, v FROM t');
      assert.deepEqual(row, { id: 1, v: 'b' });
      assert.equal(Object.getPrototypeOf(row), Object.prototype);
      const [first] = await db.query('SELECT id, v FROM t');
      assert.equal(Object.getPrototypeOf(first), Object.prototype);
      assert.deepEqual(await db.raw('SELECT id, v FROM t', [], { rowMode: 'array' }), {
        rows: [[1, 'b']],
      });
      // The cached statement gives objects again after the arrays.
      assert.deepEqual(await db.query('SELECT id, v FROM t'), [{ id: 1, v: 'b' }]);
      // SQLite prepares a cached `SELECT *` again after a schema change: the new names show.
      assert.deepEqual(await db.get('SELECT * FROM t'), { id: 1, v: 'b' });
      await db.run('ALTER TABLE t RENAME COLUMN v TO title');
      await db.run('ALTER TABLE t ADD COLUMN extra integer');
      assert.deepEqual(await db.get('SELECT * FROM t'), { id: 1, title: 'b', extra: null });
      // A column named __proto__ is a column, not the row's prototype.
      const odd = await db.get<Record<string, unknown>>("SELECT 'x' AS __proto__, 2 AS n");
      assert.deepEqual(Object.keys(odd!), ['__proto__', 'n']);
      assert.equal(Object.getPrototypeOf(odd), Object.prototype);
      assert.deepEqual(await db.raw('INSERT INTO t (title) VALUES (?)', ['c']), {
        rows: [],
        changes: 1,
        lastInsertId: 2,
      });
    } finally {
      await cleanup();
    }
  });

  test(`${driver}: a file that cannot be opened or written is a client-safe 503, the detail logged`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cdh-cantopen-'));
    writeFileSync(join(dir, 'a-file'), '');
    /** A DatabaseUnavailableError that names no file and no driver text; the log has them. */
    const refused = async (statement: Promise<unknown>, logged: RegExp, path: string) => {
      const error = await statement.then(
        () => assert.fail('the statement succeeded'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof DatabaseUnavailableError, `got ${String(error)}`);
      assert.equal(error.status, 503);
      assert.equal(error.message, 'The database is unavailable. Try again shortly.');
      assert.doesNotMatch(error.message, /SQLITE|unable|readonly|cdh-/i);
      assert.equal(logger.errors.length, 1, logger.errors.join('\n'));
      assert.ok(logger.errors[0]!.includes(path), logger.errors[0]);
      assert.match(logger.errors[0]!, logged);
      logger.errors.length = 0;
    };
    const logger = capturingLogger();
    try {
      // A missing directory, and one that is a file (a read-only directory fails the same way,
      // but not for root, who may write anywhere).
      for (const path of [join(dir, 'missing', 'app.db'), join(dir, 'a-file', 'app.db')]) {
        const db = newSqlite(driver, { path, logger });
        await refused(db.get('SELECT 1'), /unable to open database file|does not exist/, path);
        assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
        await db.closePool();
      }

      // The directory removed under a running pool: the next write cannot touch the file. That
      // connection is not reused; once the directory is back, a new one serves.
      const path = join(dir, 'gone', 'app.db');
      mkdirSync(join(dir, 'gone'));
      const db = newSqlite(driver, { path, logger, pragmas: { journal_mode: 'delete' } });
      await db.run('CREATE TABLE t (v integer)');
      rmSync(join(dir, 'gone'), { recursive: true });
      const scope = createScope(db);
      await scope.run(() =>
        refused(db.run('INSERT INTO t (v) VALUES (1)'), /readonly|unable to open/i, path),
      );
      await scope.release();
      assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
      mkdirSync(join(dir, 'gone'));
      assert.deepEqual(await db.get('SELECT 1 AS one'), { one: 1 });
      await db.closePool();
      // A statement's own mistake is not a file failure: it stays the driver's error.
      await assert.rejects(db.get('SELECT * FROM nowhere'), /no such table/);
      assert.deepEqual(logger.errors, []);
      await db.closePool();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
