// Configuration given to the database in index.ts reaches the drivers, on a real PostgreSQL and
// real SQLite files: pg's PoolConfig (application_name, statement_timeout, min, maxUses) and
// better-sqlite3's options pass through as they are; SQLite pragmas over the defaults; the
// per-connection hook (onConnect) runs once on every new connection before its first statement,
// and a hook that throws gives a client-safe 503, logs the detail and leaks nothing, over real
// HTTP too; SQLite's wait for the write turn and the wait for a connection have their own bounds.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import {
  type Checkout,
  createScope,
  type Database,
  DatabaseUnavailableError,
  PoolTimeoutError,
} from '../../src/runtime/runtime.ts';
import { enterRequest } from '../../src/runtime/runtime-node.ts';
import { PostgresDatabase } from '../../src/runtime/runtime-postgres.ts';
import { type SqliteConnection, SqliteDatabase } from '../../src/runtime/runtime-sqlite.ts';
import {
  admin,
  type CapturingLogger,
  capturingLogger,
  countReleases,
  type Kind,
  kinds,
  mysqlSessions,
  type Opened,
  openPostgres,
  openSqlite,
  recordAcquires,
  settlesWithin,
  sleep,
  waitFor,
} from './databases.ts';

// Timers can fire a little early as measured here (Node schedules them from the event loop's
// cached time). Late is never checked against the clock: see settlesWithin().
const EARLY = 20;

/** What a client may see of a 503: the exact message, nothing about the server or the driver. */
const CLIENT_MESSAGE = 'The database is unavailable. Try again shortly.';

async function elapsed<T>(
  promise: Promise<T>,
): Promise<{ ms: number; value?: T; error?: unknown }> {
  const started = performance.now();
  try {
    const value = await promise;
    return { ms: performance.now() - started, value };
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
}

/** A promise with its resolve function, for a test to say when a holder may go on. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** The client backends connected to the test database, besides the one counting them. */
function backends(url: string): Promise<number[]> {
  return admin(url, async (client) => {
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid",
    );
    return rows.map((row) => row.pid);
  });
}

/** A DatabaseUnavailableError that tells a client nothing about the server, driver or hook. */
function assertClientSafe(error: unknown, secrets: string[]): asserts error is Error {
  assert.ok(
    error instanceof DatabaseUnavailableError,
    `expected DatabaseUnavailableError, got ${error}`,
  );
  assert.equal(error.status, 503);
  assert.equal(error.code, 'DATABASE_UNAVAILABLE');
  assert.equal(error.message, CLIENT_MESSAGE);
  for (const secret of secrets) {
    assert.ok(!error.message.includes(secret), `message shows ${secret}`);
  }
}

describe('postgres: pg PoolConfig passed through', () => {
  test('application_name and statement_timeout reach the server on the request connection', async () => {
    const { db, url, cleanup } = await openPostgres({
      max: 2,
      application_name: 'cdh-config-test',
      statement_timeout: 300,
    });
    try {
      const scope = createScope(db);
      const pid = await scope.run(async () => {
        const row = await db.get<{ app: string; timeout: string; pid: number }>(
          "SELECT current_setting('application_name') AS app, current_setting('statement_timeout') AS timeout, pg_backend_pid() AS pid",
        );
        assert.deepEqual(
          { app: row!.app, timeout: row!.timeout },
          { app: 'cdh-config-test', timeout: '300ms' },
        );
        // What the server shows for this very connection.
        const shown = await admin(url!, (client) =>
          client.query('SELECT application_name FROM pg_stat_activity WHERE pid = $1', [row!.pid]),
        );
        assert.equal(shown.rows[0]?.application_name, 'cdh-config-test');

        // A statement running longer than the timeout is cancelled by the server.
        const slow = await elapsed(db.get('SELECT pg_sleep(10)'));
        assert.ok(slow.error instanceof pg.DatabaseError, `got ${slow.error}`);
        assert.equal(slow.error.code, '57014'); // query_canceled
        assert.match(slow.error.message, /canceling statement due to statement timeout/);
        assert.ok(slow.ms >= 300 - EARLY, `cancelled after ${slow.ms} ms, before the timeout`);
        // An SQL error, not a broken connection: the request keeps its connection.
        const after = await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        assert.equal(after!.pid, row!.pid);
        return row!.pid;
      });
      await scope.release();
      assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
      assert.deepEqual(await backends(url!), [pid], 'the connection was kept, not replaced');

      // Without the options, the server's defaults: so the values above came from the options.
      const plain = new PostgresDatabase({ connectionString: url });
      try {
        assert.deepEqual(
          await plain.get(
            "SELECT current_setting('application_name') AS app, current_setting('statement_timeout') AS timeout",
          ),
          { app: '', timeout: '0' },
        );
      } finally {
        await plain.closePool();
      }
    } finally {
      await cleanup();
    }
  });

  test('maxUses: a connection is replaced after that many checkouts', async () => {
    const { db, url, cleanup } = await openPostgres({ max: 1, maxUses: 2 });
    try {
      const pids: number[] = [];
      for (let i = 0; i < 4; i++) {
        pids.push((await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid);
      }
      assert.equal(pids[0], pids[1]);
      assert.equal(pids[2], pids[3]);
      assert.notEqual(pids[1], pids[2], `pids ${pids}: the first connection was used a third time`);
      await waitFor(async () => !(await backends(url!)).includes(pids[0]!));
      assert.equal(db.stats().inUse, 0);
    } finally {
      await cleanup();
    }
  });

  test('maxLifetimeSeconds: a connection that old is replaced, idle or when it comes back', async () => {
    const { db, url, cleanup } = await openPostgres({ max: 1, maxLifetimeSeconds: 1 });
    const pid = async () => (await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid;
    try {
      const first = await pid();
      assert.equal(await pid(), first, 'replaced before its lifetime');
      await sleep(1100); // idle past its lifetime: not handed out again
      const second = await pid();
      assert.notEqual(second, first);
      await waitFor(async () => !(await backends(url!)).includes(first));
      // In use past its lifetime: it finishes its request, then goes.
      const scope = createScope(db);
      const inRequest = await scope.run(async () => {
        const before = await pid();
        await sleep(1100);
        return [before, await pid()];
      });
      await scope.release();
      assert.deepEqual(inRequest, [second, second]);
      assert.notEqual(await pid(), second);
      assert.equal(db.stats().total, 1);
    } finally {
      await cleanup();
    }
  });

  test('min: that many idle connections outlive idleTimeoutMillis (without it, none)', async () => {
    const { db, url, cleanup } = await openPostgres({ max: 3, min: 2, idleTimeoutMillis: 100 });
    /** Three requests holding a connection each at once, then done. */
    const threeAtOnce = async (database: Database) => {
      const scopes = [createScope(database), createScope(database), createScope(database)];
      await Promise.all(scopes.map((scope) => scope.connect()));
      await Promise.all(scopes.map((scope) => scope.release()));
    };
    try {
      const control = new PostgresDatabase({
        connectionString: url,
        max: 3,
        idleTimeoutMillis: 100,
      });
      try {
        await threeAtOnce(control);
        assert.equal(control.stats().total, 3);
        await waitFor(() => control.stats().total === 0);
      } finally {
        await control.closePool();
      }
      await waitFor(async () => (await backends(url!)).length === 0);

      await threeAtOnce(db);
      assert.equal(db.stats().total, 3);
      await waitFor(() => db.stats().total === 2);
      await sleep(500); // five idle timeouts
      assert.deepEqual(db.stats(), { total: 2, idle: 2, inUse: 0, waiting: 0 });
      assert.equal((await backends(url!)).length, 2);
    } finally {
      await cleanup();
    }
  });
});

describe('postgres: onConnect', () => {
  test('runs once per new connection, before its first statement, on each of 3 used at once', async () => {
    const hookedPids: number[] = [];
    const { db, cleanup } = await openPostgres({
      max: 3,
      onConnect: async (client) => {
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await sleep(50); // a slow hook: the first statement must wait for it
        await client.query(`SET cdh.hooked = '${rows[0]!.pid}'`);
        hookedPids.push(rows[0]!.pid);
      },
    });
    const FIRST = "SELECT current_setting('cdh.hooked', true) AS hooked, pg_backend_pid() AS pid";
    try {
      const scopes = [createScope(db), createScope(db), createScope(db)];
      // Each request's first statement; all three hold their connections until all have run.
      const rows = await Promise.all(
        scopes.map((scope) =>
          scope.run(() => db.get<{ hooked: string | null; pid: number }>(FIRST)),
        ),
      ).finally(() => Promise.all(scopes.map((scope) => scope.release())));
      const pids = rows.map((row) => row!.pid);
      assert.equal(new Set(pids).size, 3, 'three connections');
      for (const row of rows) assert.equal(row!.hooked, String(row!.pid), 'the hook ran first');
      assert.deepEqual([...hookedPids].sort(), [...pids].sort(), 'once on each');

      // Reused connections are not hooked again, and keep what their hook set.
      for (let i = 0; i < 6; i++) {
        const scope = createScope(db);
        const row = await scope.run(() => db.get<{ hooked: string; pid: number }>(FIRST));
        await scope.release();
        assert.equal(row!.hooked, String(row!.pid));
      }
      assert.equal(hookedPids.length, 3);
      assert.equal(db.stats().total, 3);
    } finally {
      await cleanup();
    }
  });

  test('one that throws: a client-safe 503, the detail logged, no connection left; a working hook then serves', async () => {
    const logger = capturingLogger();
    let failing = true;
    let attempts = 0;
    const { db, url, cleanup } = await openPostgres({
      max: 1, // a failed checkout must give its slot back, or the next one would wait
      acquireTimeoutMillis: 2000,
      logger,
      onConnect: async (client) => {
        attempts++;
        await client.query('SELECT 1'); // the connection is open on the server
        if (failing) throw new Error('cdh-hook-detail: SET search_path failed');
      },
    });
    const { hostname, port } = new URL(url!);
    const secrets = ['cdh-hook-detail', 'search_path', hostname, port, 'onConnect', 'PostgreSQL'];
    try {
      const releases = countReleases(db);
      // In a request, then outside one (a statement that borrows a connection).
      const scope = createScope(db);
      const inRequest = await elapsed(scope.run(() => db.get('SELECT 1')));
      await scope.release();
      const borrowed = await elapsed(db.get('SELECT 1'));
      for (const { error } of [inRequest, borrowed]) {
        assertClientSafe(error, secrets);
        assert.match(String((error.cause as Error).message), /cdh-hook-detail/);
      }
      assert.equal(attempts, 2);
      assert.equal(logger.errors.length, 2);
      for (const line of logger.errors)
        assert.match(line, /cdh-hook-detail: SET search_path failed/);
      assert.equal(releases.count, 0, 'no connection was handed out');
      assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
      await waitFor(async () => (await backends(url!)).length === 0);

      failing = false;
      assert.deepEqual(await db.get('SELECT 1 AS one'), { one: 1 });
      assert.equal(attempts, 3);
      assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
      assert.equal((await backends(url!)).length, 1);
    } finally {
      await cleanup();
    }
  });
});

describe('sqlite: pragmas and better-sqlite3 options', () => {
  const PRAGMAS = ['foreign_keys', 'cache_size', 'temp_store', 'synchronous', 'journal_mode'];
  const readPragmas = async (db: Database) => {
    const values: Record<string, unknown> = {};
    for (const name of PRAGMAS) Object.assign(values, await db.get(`PRAGMA ${name}`));
    return values;
  };

  test('pragmas and the default WAL and synchronous=normal reach every connection, 3 in use at once', async () => {
    const { db, cleanup } = await openSqlite({
      max: 3,
      // better-sqlite3 turns foreign keys on already; the other two differ from its defaults.
      pragmas: { foreign_keys: 'on', cache_size: -4000, temp_store: 'memory' },
    });
    try {
      await db.run('CREATE TABLE parent (id INTEGER PRIMARY KEY)');
      await db.run('CREATE TABLE child (parent_id INTEGER REFERENCES parent (id))');
      const acquired = recordAcquires<SqliteConnection>(db);
      const scopes = [createScope(db), createScope(db), createScope(db)];
      const seen = await Promise.all(
        scopes.map((scope) =>
          scope.run(async () => {
            const values = await readPragmas(db);
            // And the connection acts on it: a dangling reference is refused.
            const orphan = await elapsed(db.run('INSERT INTO child (parent_id) VALUES (42)'));
            return { values, refused: (orphan.error as { code?: string })?.code };
          }),
        ),
      ).finally(() => Promise.all(scopes.map((scope) => scope.release())));
      assert.equal(new Set(acquired).size, 3, 'three connections');
      for (const { values, refused } of seen) {
        assert.deepEqual(values, {
          foreign_keys: 1,
          cache_size: -4000,
          temp_store: 2, // memory
          synchronous: 1, // normal
          journal_mode: 'wal',
        });
        assert.equal(refused, 'SQLITE_CONSTRAINT_FOREIGNKEY');
      }
    } finally {
      await cleanup();
    }
  });

  test('without pragmas the defaults apply; a pragma given overrides its default', async () => {
    const defaults = await openSqlite();
    try {
      assert.deepEqual(await readPragmas(defaults.db), {
        foreign_keys: 1, // better-sqlite3's build default
        cache_size: -16000,
        temp_store: 0,
        synchronous: 1,
        journal_mode: 'wal',
      });
    } finally {
      await defaults.cleanup();
    }
    const overridden = await openSqlite({
      pragmas: { journal_mode: 'delete', synchronous: 'full' },
    });
    try {
      const values = await readPragmas(overridden.db);
      assert.equal(values.journal_mode, 'delete');
      assert.equal(values.synchronous, 2); // full
    } finally {
      await overridden.cleanup();
    }
  });

  test('an invalid pragma name or value throws a TypeError at construction, naming it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cdh-pragma-'));
    const path = join(dir, 'app.db');
    try {
      const name = 'foreign_keys = on; DROP TABLE users; --';
      assert.throws(
        () => new SqliteDatabase({ path, pragmas: { [name]: 1 } }),
        (error: unknown) =>
          error instanceof TypeError && error.message.includes(JSON.stringify(name)),
      );
      for (const value of ['1; DROP TABLE users', "'wal'", 'wal --', '']) {
        assert.throws(
          () => new SqliteDatabase({ path, pragmas: { journal_mode: value } }),
          (error: unknown) =>
            error instanceof TypeError &&
            error.message.includes('"journal_mode"') &&
            error.message.includes(JSON.stringify(value)),
          `value ${JSON.stringify(value)}`,
        );
      }
      // Plain names and values (negative numbers too) are fine.
      new SqliteDatabase({
        path,
        pragmas: { cache_size: -20000, foreign_keys: 'on', mmap_size: 0 },
      });
      assert.equal(existsSync(path), false, 'construction opens nothing');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("better-sqlite3's own options pass through: readonly refuses writes", async () => {
    const writer = await openSqlite();
    try {
      await writer.db.run('CREATE TABLE t (v INTEGER)');
      await writer.db.run('INSERT INTO t (v) VALUES (1)');
      await writer.db.closePool();
      // The file is in WAL mode, as the runtime's default pragma left it.
      const reader = new SqliteDatabase({ path: writer.path, readonly: true });
      try {
        assert.deepEqual(await reader.query('SELECT v FROM t'), [{ v: 1 }]);
        await assert.rejects(reader.run('INSERT INTO t (v) VALUES (2)'), {
          code: 'SQLITE_READONLY',
        });
      } finally {
        await reader.closePool();
      }
      assert.deepEqual(await writer.db.query('SELECT v FROM t'), [{ v: 1 }]);
    } finally {
      await writer.cleanup();
    }
  });

  test('readonly on a file that is not in WAL mode: read as it is (no default pragma to refuse)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cdh-readonly-'));
    const path = join(dir, 'plain.db');
    try {
      const plain = new BetterSqlite3(path); // rollback journal, as the sqlite3 shell makes it
      plain.exec('CREATE TABLE t (v INTEGER); INSERT INTO t (v) VALUES (7)');
      plain.close();
      const reader = new SqliteDatabase({ path, readonly: true });
      try {
        assert.deepEqual(await reader.query('SELECT v FROM t'), [{ v: 7 }]);
        assert.equal(
          (await reader.get<{ journal_mode: string }>('PRAGMA journal_mode'))?.journal_mode,
          'delete',
        );
      } finally {
        await reader.closePool();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('fileMustExist on a missing file: a client-safe 503 and a log line naming the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cdh-missing-'));
    const path = join(dir, 'missing.db');
    const logger = capturingLogger();
    try {
      const db = new SqliteDatabase({ path, fileMustExist: true, logger });
      const { error } = await elapsed(db.get('SELECT 1'));
      assertClientSafe(error, [path, 'missing.db', 'SQLITE', 'unable to open']);
      assert.equal(logger.errors.length, 1);
      assert.ok(logger.errors[0]!.includes(path), logger.errors[0]);
      assert.match(logger.errors[0]!, /unable to open database file/);
      assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
      assert.equal(existsSync(path), false);
      await db.closePool();

      // Without the option, better-sqlite3 creates the file.
      const creating = new SqliteDatabase({ path });
      await creating.get('SELECT 1');
      await creating.closePool();
      assert.equal(existsSync(path), true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sqlite: onConnect', () => {
  test('runs once on every new connection, awaited before its first statement; its function works on each', async () => {
    const hooked: BetterSqlite3.Database[] = [];
    const { db, cleanup } = await openSqlite({
      max: 3,
      onConnect: async (connection) => {
        await sleep(20); // a slow hook: the first statement must wait for it
        connection.function('twice', (value: unknown) => Number(value) * 2);
        hooked.push(connection);
      },
    });
    try {
      const acquired = recordAcquires<SqliteConnection>(db);
      const scopes = [createScope(db), createScope(db), createScope(db)];
      const rows = await Promise.all(
        scopes.map((scope) => scope.run(() => db.get<{ v: number }>('SELECT twice(21) AS v'))),
      ).finally(() => Promise.all(scopes.map((scope) => scope.release())));
      assert.deepEqual(rows, [{ v: 42 }, { v: 42 }, { v: 42 }]);
      assert.equal(hooked.length, 3);
      assert.deepEqual(
        new Set(acquired.map((conn) => conn.handle)),
        new Set(hooked),
        'the hook ran on each connection used',
      );

      for (let i = 0; i < 6; i++) {
        const scope = createScope(db);
        assert.deepEqual(await scope.run(() => db.get('SELECT twice(?) AS v', [i])), { v: 2 * i });
        await scope.release();
      }
      assert.equal(hooked.length, 3, 'not run again on a reused connection');
      assert.equal(db.stats().total, 3);
    } finally {
      await cleanup();
    }
  });

  test('one that throws: a client-safe 503, the connection closed, the detail logged, nothing leaked; a working hook then serves', async () => {
    const logger = capturingLogger();
    let failing = true;
    const handles: BetterSqlite3.Database[] = [];
    const opened = await openSqlite({
      max: 1,
      acquireTimeoutMillis: 2000,
      logger,
      onConnect: (connection) => {
        handles.push(connection);
        if (failing) throw new Error('cdh-hook-detail: could not attach audit.db');
      },
    });
    const { db, path, cleanup } = opened;
    try {
      const releases = countReleases(db);
      const scope = createScope(db);
      const inRequest = await elapsed(scope.run(() => db.get('SELECT 1')));
      await scope.release();
      const borrowed = await elapsed(db.get('SELECT 1'));
      for (const { error } of [inRequest, borrowed]) {
        assertClientSafe(error, ['cdh-hook-detail', 'audit.db', path!, 'SQLite', 'onConnect']);
      }
      assert.equal(handles.length, 2);
      for (const handle of handles)
        assert.equal(handle.open, false, 'the failed connection is closed');
      assert.equal(logger.errors.length, 2);
      for (const line of logger.errors) {
        assert.match(line, /cdh-hook-detail: could not attach audit\.db/);
        assert.ok(line.includes(path!), line);
      }
      assert.equal(releases.count, 0, 'no connection was handed out');
      assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });

      failing = false;
      assert.deepEqual(await db.get('SELECT 1 AS one'), { one: 1 });
      assert.equal(handles.length, 3);
      assert.equal(handles[2]!.open, true);
      assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
    } finally {
      await cleanup();
    }
  });
});

describe('sqlite: the wait for the write turn and the wait for a connection have their own bounds', () => {
  /**
   * Two connections, both in use: `holder` in a write transaction (so it holds the write turn)
   * until `finish` opens, `other` idle in its request. Then `other` writes (it waits for the
   * turn), and a third request asks for a connection (it waits for one).
   */
  async function twoWaits(acquireTimeoutMillis: number, writeTimeoutMillis: number) {
    const logger = capturingLogger();
    const opened = await openSqlite({ max: 2, acquireTimeoutMillis, writeTimeoutMillis, logger });
    const { db } = opened;
    await db.run('CREATE TABLE t (v INTEGER)');
    const holder = createScope(db);
    const other = createScope(db);
    const third = createScope(db);
    const finish = gate();
    const inTransaction = gate();
    const transaction = holder.run(() =>
      db.atomic(async () => {
        await db.run('INSERT INTO t (v) VALUES (1)');
        inTransaction.open();
        await finish.promise;
      }),
    );
    await inTransaction.promise;
    await other.connect();
    assert.equal(db.stats().inUse, 2);
    const write = elapsed(other.run(() => db.run('INSERT INTO t (v) VALUES (2)')));
    const read = elapsed(third.run(() => db.get<{ n: number }>('SELECT count(*) AS n FROM t')));
    let writeSettled = false;
    let readSettled = false;
    void write.then(() => {
      writeSettled = true;
    });
    void read.then(() => {
      readSettled = true;
    });
    return {
      opened,
      logger,
      write,
      read,
      settled: () => ({ write: writeSettled, read: readSettled }),
      /** Ends the holder's transaction and request: the turn and a connection come free. */
      async release() {
        finish.open();
        await transaction;
        await holder.release();
      },
      async cleanup() {
        finish.open();
        await Promise.all([holder.release(), other.release(), third.release()]);
        await opened.cleanup();
      },
    };
  }

  function assertTimedOut(
    result: { ms: number; error?: unknown },
    bound: number,
    logger: CapturingLogger,
    option: string,
  ) {
    assert.ok(
      result.error instanceof PoolTimeoutError,
      `expected PoolTimeoutError, got ${result.error}`,
    );
    assert.equal(result.error.status, 503);
    assert.ok(result.ms >= bound - EARLY, `gave up after ${result.ms} ms, before ${bound} ms`);
    // Not late either: the one error logged names this bound, not the other wait's.
    assert.equal(logger.errors.length, 1);
    assert.match(logger.errors[0]!, new RegExp(option));
  }

  test('a short writeTimeoutMillis cuts the write wait; the connection wait goes on to its long bound', async () => {
    const waits = await twoWaits(10_000, 300);
    try {
      assert.ok(await settlesWithin(waits.write, 3000), 'the write waited past its bound');
      const write = await waits.write;
      assertTimedOut(write, 300, waits.logger, 'writeTimeoutMillis');
      await sleep(300); // past the write bound, well inside the connection's
      assert.deepEqual(waits.settled(), { write: true, read: false });
      assert.equal(waits.opened.db.stats().waiting, 1);
      await waits.release();
      const read = await waits.read;
      assert.equal(read.error, undefined);
      assert.deepEqual(read.value, { n: 1 });
      assert.ok(read.ms >= 600 - EARLY, `served after ${read.ms} ms`);
    } finally {
      await waits.cleanup();
    }
  });

  test('a short acquireTimeoutMillis cuts the connection wait; the write wait goes on to its long bound', async () => {
    const waits = await twoWaits(300, 10_000);
    try {
      assert.ok(await settlesWithin(waits.read, 3000), 'the checkout waited past its bound');
      const read = await waits.read;
      assertTimedOut(read, 300, waits.logger, 'acquireTimeoutMillis');
      await sleep(300);
      assert.deepEqual(waits.settled(), { write: false, read: true });
      await waits.release();
      const write = await waits.write;
      assert.equal(write.error, undefined);
      assert.deepEqual(write.value, { changes: 1, lastInsertId: 2 });
      assert.ok(write.ms >= 600 - EARLY, `written after ${write.ms} ms`);
      assert.deepEqual(await waits.opened.db.query('SELECT v FROM t ORDER BY v'), [
        { v: 1 },
        { v: 2 },
      ]);
    } finally {
      await waits.cleanup();
    }
  });
});

/** Opens `kind` with a connection hook that throws while `hook.failing`. */
function openWithHook(
  kind: Kind,
  logger: CapturingLogger,
): Promise<{ opened: Opened; hook: { failing: boolean; calls: number } }> {
  const hook = { failing: true, calls: 0 };
  const onConnect = () => {
    hook.calls++;
    if (hook.failing) throw new Error('cdh-hook-detail: tenant setup failed');
  };
  const options = { max: 2, acquireTimeoutMillis: 2000, logger, onConnect };
  const opening = kind.open(options);
  return opening.then((opened) => ({ opened, hook }));
}

type Handler = (req: IncomingMessage, res: ServerResponse) => unknown;

/**
 * A node:http server on 127.0.0.1 whose requests go through enterRequest(), as every adapter's
 * do. A rejection is answered as frameworks do it: with its status, and its message when the
 * error says it may be shown (expose).
 */
async function serve(db: Database, checkout: Checkout, handler: Handler) {
  const server = http.createServer((req, res) => {
    enterRequest(req, res, { database: db, checkout }, () => handler(req, res)).catch(
      (error: { status?: number; expose?: boolean; message?: string }) => {
        res.writeHead(error.status ?? 500, { 'content-type': 'text/plain' });
        res.end(error.expose ? error.message : 'Internal Server Error');
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

for (const kind of kinds) {
  for (const checkout of ['lazy', 'eager'] as const) {
    test(`${kind.name}, ${checkout} checkout: a throwing connection hook over real HTTP answers a clean 503 and leaks nothing`, async () => {
      const logger = capturingLogger();
      const { opened, hook } = await openWithHook(kind, logger);
      const { db, url, mysqlUrl } = opened;
      let handled = 0;
      const server = await serve(db, checkout, async (_req, res) => {
        handled++;
        const row = await db.get('SELECT 1 AS one');
        res.end(JSON.stringify(row));
      });
      try {
        const releases = countReleases(db);
        for (let i = 0; i < 3; i++) {
          const { status, body } = await get(server.port, `/items?i=${i}`);
          assert.equal(status, 503);
          assert.equal(body, CLIENT_MESSAGE);
        }
        assert.equal(hook.calls, 3);
        assert.equal(handled, checkout === 'eager' ? 0 : 3, 'eager: 503 before the handler');
        assert.equal(logger.errors.length, 3);
        for (const line of logger.errors)
          assert.match(line, /cdh-hook-detail: tenant setup failed/);
        await waitFor(() => db.stats().inUse === 0);
        assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
        assert.equal(releases.count, 0);
        if (url) await waitFor(async () => (await backends(url)).length === 0);
        if (mysqlUrl) await waitFor(async () => (await mysqlSessions(mysqlUrl)).length === 0);

        hook.failing = false;
        assert.deepEqual(await get(server.port, '/items'), { status: 200, body: '{"one":1}' });
        await waitFor(() => releases.count === 1);
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
        if (url) assert.equal((await backends(url)).length, 1);
        if (mysqlUrl) assert.equal((await mysqlSessions(mysqlUrl)).length, 1);
      } finally {
        await server.close();
        await opened.cleanup();
      }
    });
  }
}
