// One request's session state never reaches the next request on the same connection (issue 23),
// on a real PostgreSQL and real SQLite files, each request over real HTTP through enterRequest()
// (what every node:http adapter runs) on a pool of ONE connection, so request B gets the very
// connection request A used. Each kind of state A can leave is absent for B, which sees what a
// brand-new connection sees (measured first, on the pool's first connection), with the
// per-connection hook's settings, pg's own options and the configured pragmas still in force.
// PostgreSQL resets in place (same backend, DISCARD ALL then onConnect again); SQLite replaces
// the connection. A request that changed nothing is not reset at all. A connection whose reset
// fails or hangs is closed, not reused, and closePool() does not wait for a hung reset. Under
// `pgbouncer: true` session state is refused, saying what lasts one transaction instead.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Database, DbHooksError } from '../../src/runtime/runtime.ts';
import type { PostgresDatabase } from '../../src/runtime/runtime-postgres.ts';
import type { SqliteDatabase } from '../../src/runtime/runtime-sqlite.ts';
import { idleInTransaction, postgresUrl } from '../support/postgres.ts';
import {
  admin,
  capturingLogger,
  newSqlite,
  type Opened,
  openPostgres,
  openSqlite,
  sleep,
  sqliteDrivers,
  waitFor,
} from './databases.ts';
import { type Server, serve } from './request-server.ts';

/** Counts the driver's resets (PostgreSQL's resetSession), to show when none happens. */
function countResets(db: Database<any>): { count: number } {
  const counter = { count: 0 };
  const driver = (db as any).driver;
  const original = driver.resetSession?.bind(driver);
  if (original) {
    driver.resetSession = (conn: unknown) => {
      counter.count++;
      return original(conn);
    };
  }
  return counter;
}

// --- PostgreSQL ---------------------------------------------------------------------------

/** Everything a request can leave on a PostgreSQL session, as this session sees it. */
const POSTGRES_STATE = `SELECT
  pg_backend_pid() AS pid,
  nullif(current_setting('app.tenant', true), '') AS tenant,
  nullif(current_setting('app.hook', true), '') AS hook,
  current_setting('statement_timeout') AS statement_timeout,
  current_setting('lock_timeout') AS lock_timeout,
  current_setting('application_name') AS application_name,
  current_setting('search_path') AS search_path,
  current_user::text AS current_user,
  session_user::text AS session_user,
  (SELECT count(*)::int FROM pg_class WHERE relnamespace = pg_my_temp_schema()) AS temp_relations,
  (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks,
  (SELECT count(*)::int FROM pg_listening_channels()) AS listening,
  (SELECT count(*)::int FROM pg_prepared_statements) AS prepared,
  (SELECT count(*)::int FROM pg_cursors) AS cursors`;

type PostgresState = Record<string, unknown> & { pid: number };

async function postgresState(db: Database): Promise<PostgresState> {
  return (await db.get<PostgresState>(POSTGRES_STATE))!;
}

interface PostgresCase {
  name: string;
  /** What request A runs. */
  change: (db: PostgresDatabase) => Promise<unknown>;
  /** What A sees of its change (part of the state), to show it did change something. */
  visible: Partial<PostgresState>;
  /** Seen from another connection after B's request: the change is gone for everyone. */
  elsewhere?: (url: string) => Promise<void>;
}

describe('postgres: a request that changed session state leaves none for the next', () => {
  let opened: Opened<PostgresDatabase>;
  let server: Server;
  let fresh: PostgresState;
  let hookRuns = 0;
  let resets: { count: number };
  const role = `cdh_session_${randomBytes(4).toString('hex')}`;

  before(async () => {
    await admin(await postgresUrl(), (client) => client.query(`CREATE ROLE ${role} NOLOGIN`));
    opened = await openPostgres({
      max: 1,
      // pg's own options: sent when the connection opens, so DISCARD ALL goes back to them.
      statement_timeout: 30000,
      application_name: 'cdh-session',
      onConnect: async (client) => {
        hookRuns++;
        await client.query("SET app.hook = 'on'");
        await client.query("SET lock_timeout = '7s'");
      },
    });
    resets = countResets(opened.db);
    server = await serve(opened.db);
    // What a new connection has: the first request gets the pool's first connection.
    fresh = await server.inRequest(() => postgresState(opened.db));
    assert.equal(fresh.hook, 'on', 'the hook ran before the first statement');
    assert.equal(fresh.statement_timeout, '30s');
    assert.equal(fresh.lock_timeout, '7s');
    assert.equal(hookRuns, 1);
  });

  after(async () => {
    await server?.close();
    await opened?.cleanup();
    await admin(await postgresUrl(), (client) => client.query(`DROP ROLE IF EXISTS ${role}`));
  });

  const cases: PostgresCase[] = [
    {
      name: 'a custom setting by SET',
      change: (db) => db.run("SET app.tenant = 'tenant-a'"),
      visible: { tenant: 'tenant-a' },
    },
    {
      name: 'a setting pg set when connecting (statement_timeout), by SET',
      change: (db) => db.run('SET statement_timeout = 1234'),
      visible: { statement_timeout: '1234ms' },
    },
    {
      name: "settings by set_config(..., false), the request's user included",
      change: (db) =>
        db.get(
          "SELECT set_config('app.tenant', $1, false), set_config('search_path', 'pg_catalog', false)",
          ['tenant-a'],
        ),
      visible: { tenant: 'tenant-a', search_path: 'pg_catalog' },
    },
    {
      name: "the hook's settings, by RESET",
      change: async (db) => {
        await db.run('RESET app.hook');
        await db.run('RESET lock_timeout');
      },
      visible: { hook: null, lock_timeout: '0' },
    },
    {
      name: 'everything, by RESET ALL',
      change: (db) => db.run('RESET ALL'),
      visible: { hook: null, lock_timeout: '0', statement_timeout: '30s' },
    },
    {
      name: 'a SET in several statements of one simple query',
      change: (db) => db.run("SELECT 1; SET app.tenant = 'tenant-a'"),
      visible: { tenant: 'tenant-a' },
    },
    {
      name: 'a session-level SET inside db.atomic(), which outlives the COMMIT',
      change: (db) => db.atomic(() => db.run("SET app.tenant = 'tenant-a'")),
      visible: { tenant: 'tenant-a' },
    },
    {
      name: 'SET ROLE',
      change: (db) => db.run(`SET ROLE ${role}`),
      visible: { current_user: role },
    },
    {
      name: 'SET SESSION AUTHORIZATION',
      change: (db) => db.run(`SET SESSION AUTHORIZATION ${role}`),
      visible: { current_user: role, session_user: role },
    },
    {
      name: 'temporary tables (CREATE TEMP, SELECT INTO TEMP, pg_temp.)',
      change: async (db) => {
        await db.run('CREATE TEMP TABLE secret (x int)');
        await db.run('SELECT 1 AS x INTO TEMP TABLE secret_copy');
        await db.run('CREATE TABLE pg_temp.secret_too (x int)');
      },
      visible: { temp_relations: 3 },
    },
    {
      name: 'advisory locks held by the session (exclusive, shared, tried)',
      change: (db) =>
        db.get(
          'SELECT pg_advisory_lock(42), pg_advisory_lock_shared(43), pg_try_advisory_lock(44)',
        ),
      visible: { advisory_locks: 3 },
      elsewhere: (url) =>
        admin(url, async (client) => {
          const { rows } = await client.query(
            'SELECT pg_try_advisory_lock(42) AND pg_try_advisory_lock(43) AND pg_try_advisory_lock(44) AS free',
          );
          assert.equal(rows[0]!.free, true, 'another connection can take the locks');
        }),
    },
    {
      name: 'LISTEN',
      change: (db) => db.run('LISTEN cdh_events'),
      visible: { listening: 1 },
    },
    {
      name: 'prepared statements',
      change: (db) => db.run('PREPARE cdh_find AS SELECT $1::int'),
      visible: { prepared: 1 },
    },
    {
      name: 'a WITH HOLD cursor',
      change: (db) => db.run('DECLARE cdh_cursor CURSOR WITH HOLD FOR SELECT 1'),
      visible: { cursors: 1 },
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      const { db, url } = opened;
      const hookRunsBefore = hookRuns;
      const seenByA = await server.inRequest(async () => {
        await c.change(db);
        return postgresState(db);
      });
      assert.deepEqual(
        Object.fromEntries(Object.keys(c.visible).map((key) => [key, seenByA[key]])),
        c.visible,
        'request A changed its session',
      );
      const seenByB = await server.inRequest(() => postgresState(db));
      assert.equal(seenByB.pid, fresh.pid, 'B got the same connection, reset in place');
      assert.deepEqual(seenByB, fresh, 'B sees what a new connection sees');
      assert.equal(hookRuns, hookRunsBefore + 1, 'the hook ran again after DISCARD ALL');
      await c.elsewhere?.(url!);
    });
  }

  test('a request that changed nothing is not reset (no round trip added)', async () => {
    const { db } = opened;
    const before = { resets: resets.count, hookRuns };
    await db.run('CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, v text)');
    for (let i = 0; i < 5; i++) {
      await server.inRequest(async () => {
        await db.run('UPDATE items SET v = $1 WHERE id = $2', ['x', i]);
        await db.get("SELECT current_setting('app.hook') AS hook");
        // What lasts one transaction only: the pgbouncer-safe forms.
        await db.atomic(async () => {
          await db.run("SET LOCAL app.tenant = 'tenant-a'");
          await db.get("SELECT set_config('app.tenant', $1, true)", ['tenant-a']);
          await db.get('SELECT pg_advisory_xact_lock(42)');
          await db.run('CREATE TEMP TABLE scratch (x int) ON COMMIT DROP');
        });
      });
    }
    assert.deepEqual({ resets: resets.count, hookRuns }, before);
    assert.deepEqual(await server.inRequest(() => postgresState(db)), fresh);
  });

  test('statements outside a request: each borrowed connection is reset before the next borrows it', async () => {
    const { db } = opened;
    await db.run("SET app.tenant = 'outside'");
    assert.deepEqual(await postgresState(db), fresh);
  });

  test('the next request waits for the reset to finish: it never gets the connection halfway', async () => {
    let hookCalls = 0;
    const slowHook = await openPostgres({
      max: 1,
      onConnect: async (client) => {
        // Slow only when it runs again, in the reset: between DISCARD ALL and the hook's SET.
        if (hookCalls++ > 0) await sleep(200);
        await client.query("SET app.hook = 'on'");
      },
    });
    const slowServer = await serve(slowHook.db);
    try {
      const { db } = slowHook;
      const pidA = await slowServer.inRequest(async () => {
        await db.run("SET app.tenant = 'tenant-a'");
        return (await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid;
      });
      // B arrives while A's connection is being reset.
      const seenByB = await slowServer.inRequest(() => postgresState(db));
      assert.equal(seenByB.pid, pidA);
      assert.equal(seenByB.hook, 'on', 'B waited for the hook to run again');
      assert.equal(seenByB.tenant, null);
    } finally {
      await slowServer.close();
      await slowHook.cleanup();
    }
  });
});

describe('postgres: a connection that cannot be reset is closed, not reused', () => {
  const changeThenPid = (db: PostgresDatabase, sql: string) => async () => {
    await db.run(sql);
    return (await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid;
  };
  const statePid = (db: PostgresDatabase) => async () =>
    (await db.get<{ pid: number; tenant: string | null }>(
      "SELECT pg_backend_pid() AS pid, nullif(current_setting('app.tenant', true), '') AS tenant",
    ))!;

  test('the hook fails when it runs again: closed, logged, and the next request gets a new connection', async () => {
    const logger = capturingLogger();
    let calls = 0;
    const opened = await openPostgres({
      max: 1,
      logger,
      onConnect: async (client) => {
        if (calls++ === 1) throw new Error('cdh-hook-failed-on-reset');
        await client.query("SET app.hook = 'on'");
      },
    });
    const server = await serve(opened.db);
    try {
      const pidA = await server.inRequest(changeThenPid(opened.db, "SET app.tenant = 'a'"));
      const seenByB = await server.inRequest(statePid(opened.db));
      assert.notEqual(seenByB.pid, pidA, 'a new connection');
      assert.equal(seenByB.tenant, null);
      assert.equal(calls, 3, 'the hook ran on the new connection too');
      assert.match(logger.errors.join('\n'), /could not reset .*cdh-hook-failed-on-reset/);
      await waitFor(() => opened.db.stats().inUse === 0);
      assert.deepEqual(opened.db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
    } finally {
      await server.close();
      await opened.cleanup();
    }
  });

  test('a reset that hangs is cut off at resetTimeoutMillis; closePool() does not wait for one', async () => {
    const logger = capturingLogger();
    let calls = 0;
    const opened = await openPostgres({
      max: 1,
      logger,
      // Ten times closeTimeoutMillis: closePool() below stops waiting first, however loaded.
      resetTimeoutMillis: 2000,
      closeTimeoutMillis: 200,
      onConnect: async () => {
        // Its runs in the two resets below never end; on new connections it is quick.
        if (calls++ % 2 === 1) await new Promise(() => {});
      },
    });
    const server = await serve(opened.db);
    try {
      const { db } = opened;
      const pidA = await server.inRequest(changeThenPid(db, "SET app.tenant = 'a'"));
      // One connection: B waits until the hung reset is cut off and the connection replaced.
      const seenByB = await server.inRequest(statePid(db));
      assert.notEqual(seenByB.pid, pidA, 'the hung connection was closed');
      assert.equal(seenByB.tenant, null);
      assert.equal(logger.errors.length, 1);
      assert.match(logger.errors[0]!, /resetTimeoutMillis, 2000 ms/);

      // Another hung reset, and closePool() meanwhile: it stops waiting at closeTimeoutMillis.
      await server.inRequest(changeThenPid(db, "SET app.tenant = 'a'"));
      await db.closePool();
      assert.equal(logger.errors.length, 2);
      assert.match(logger.errors[1]!, /closePool\(\) stopped waiting for it/);
      assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
    } finally {
      await server.close();
      await opened.cleanup();
    }
  });
});

test('postgres: a BEGIN run by hand and left open is rolled back, with or without settings in it', async () => {
  const opened = await openPostgres({ max: 1 });
  const server = await serve(opened.db);
  try {
    const { db, url } = opened;
    await db.run('CREATE TABLE t (x int)');
    const seen = () =>
      db.get<{ pid: number; tenant: string | null; own: boolean; n: number }>(
        "SELECT pg_backend_pid() AS pid, nullif(current_setting('app.tenant', true), '') AS tenant, now() = statement_timestamp() AS own, (SELECT count(*)::int FROM t) AS n",
      );
    const first = (await server.inRequest(seen))!;
    for (const settings of [[], ["SET app.tenant = 'a'"]]) {
      await server.inRequest(async () => {
        await db.run('BEGIN');
        await db.run('INSERT INTO t VALUES (1)');
        for (const sql of settings) await db.run(sql);
      });
      // The same connection, in no transaction: this statement runs in one of its own.
      assert.deepEqual(await server.inRequest(seen), { ...first, own: true }, `${settings}`);
      assert.equal(await idleInTransaction(url!), 0);
    }
  } finally {
    await server.close();
    await opened.cleanup();
  }
});

describe('postgres, pgbouncer: true: session state is refused, saying what lasts a transaction', () => {
  // The refusal comes before anything is sent, so a plain server shows it (PgBouncer itself:
  // test/runtime/postgres-faults.test.ts).
  let opened: Opened<PostgresDatabase>;
  before(async () => {
    opened = await openPostgres({ max: 2, pgbouncer: true });
  });
  after(() => opened?.cleanup());

  const refusals: [string, unknown[] | undefined, RegExp][] = [
    [
      "SET app.user_id = '7'",
      undefined,
      /SET LOCAL or set_config\(name, value, true\) inside db\.atomic\(\)/,
    ],
    [
      "SELECT set_config('app.user_id', $1, false)",
      ['7'],
      /set_config\(\.\.\., false\) .*SET LOCAL or set_config\(name, value, true\) inside db\.atomic\(\)/,
    ],
    ['SELECT pg_advisory_lock(42)', undefined, /pg_advisory_xact_lock\(\) inside db\.atomic\(\)/],
    ['CREATE TEMP TABLE t (x int)', undefined, /ON COMMIT DROP inside db\.atomic\(\)/],
    ['LISTEN channel', undefined, /LISTEN/],
    ['RESET app.user_id', undefined, /SET LOCAL or set_config\(name, value, true\)/],
    ['PREPARE cdh_find AS SELECT $1::int', undefined, /parameters \(\$1, \$2\)/],
  ];
  for (const [sql, params, advice] of refusals) {
    test(`refused: ${sql}`, async () => {
      await assert.rejects(opened.db.run(sql, params), (error: unknown) => {
        assert.ok(error instanceof DbHooksError, `got ${String(error)}`);
        assert.equal(error.code, 'SESSION_STATE');
        assert.match(error.message, /PgBouncer in transaction pooling mode/);
        assert.match(error.message, advice);
        return true;
      });
    });
  }

  test('what it says to do instead works: the setting lasts the transaction', async () => {
    const { db } = opened;
    await db.run('CREATE TABLE parent (id int PRIMARY KEY)');
    await db.run(
      'CREATE TABLE child (parent int REFERENCES parent (id) DEFERRABLE INITIALLY IMMEDIATE)',
    );
    const seen = await db.atomic(async () => {
      // Statements about this transaction only are not session state: they pass.
      await db.run('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE');
      await db.run('SET CONSTRAINTS ALL DEFERRED');
      await db.run('INSERT INTO child (parent) VALUES (1)'); // checked at COMMIT, not here
      await db.run('INSERT INTO parent (id) VALUES (1)');
      await db.get("SELECT set_config('app.user_id', $1, true)", ['7']);
      await db.run("SET LOCAL app.tenant = 'tenant-a'");
      await db.get('SELECT pg_advisory_xact_lock(42)');
      return db.get(
        "SELECT current_setting('app.user_id') AS user_id, current_setting('app.tenant') AS tenant, current_setting('transaction_isolation') AS isolation",
      );
    });
    assert.deepEqual(seen, { user_id: '7', tenant: 'tenant-a', isolation: 'serializable' });
    assert.deepEqual(
      await db.get("SELECT nullif(current_setting('app.user_id', true), '') AS user_id"),
      { user_id: null },
    );
  });
});

// --- SQLite -------------------------------------------------------------------------------

/** What a request can leave on a SQLite connection, as that connection sees it. */
const SQLITE_STATE = `SELECT
  (SELECT foreign_keys FROM pragma_foreign_keys) AS foreign_keys,
  (SELECT query_only FROM pragma_query_only) AS query_only,
  (SELECT cache_size FROM pragma_cache_size) AS cache_size,
  (SELECT synchronous FROM pragma_synchronous) AS synchronous,
  (SELECT journal_mode FROM pragma_journal_mode) AS journal_mode,
  (SELECT recursive_triggers FROM pragma_recursive_triggers) AS recursive_triggers,
  (SELECT count(*) FROM temp.sqlite_master) AS temp_objects,
  (SELECT group_concat(name) FROM pragma_database_list) AS databases,
  hooked() AS hooked`;

type SqliteState = Record<string, unknown>;

async function sqliteState(db: Database): Promise<SqliteState> {
  return (await db.get<SqliteState>(SQLITE_STATE))!;
}

for (const driver of sqliteDrivers) {
  describe(`${driver}: a request that changed connection state leaves none for the next`, () => {
    let opened: Opened<SqliteDatabase>;
    let server: Server;
    let fresh: SqliteState;
    let opens = 0;

    before(async () => {
      opened = await openSqlite({
        driver,
        max: 1,
        pragmas: { foreign_keys: 'on', cache_size: -4321, synchronous: 'full' },
        onConnect: (handle) => {
          opens++;
          handle.function('hooked', () => 'yes');
          handle.exec('PRAGMA recursive_triggers = on');
        },
      });
      await opened.db.run('CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)');
      server = await serve(opened.db);
      fresh = await server.inRequest(() => sqliteState(opened.db));
      assert.deepEqual(fresh, {
        foreign_keys: 1,
        query_only: 0,
        cache_size: -4321,
        synchronous: 2,
        journal_mode: 'wal',
        recursive_triggers: 1,
        temp_objects: 0,
        databases: 'main,temp', // temp.sqlite_master above opens the temp schema
        hooked: 'yes',
      });
    });

    after(async () => {
      await server?.close();
      await opened?.cleanup();
    });

    const cases: { name: string; change: string[]; visible: SqliteState }[] = [
      {
        name: 'pragmas: configured, set by the hook, and left at their defaults',
        change: [
          'PRAGMA query_only = 1',
          'PRAGMA foreign_keys = 0',
          'PRAGMA main.cache_size = 100',
          'PRAGMA synchronous(0)',
          'PRAGMA recursive_triggers = off',
        ],
        visible: { query_only: 1, foreign_keys: 0, cache_size: 100, synchronous: 0 },
      },
      {
        name: 'temporary tables, views, triggers and indexes',
        change: [
          'CREATE TEMP TABLE secret (x)',
          'CREATE TEMPORARY VIEW secret_view AS SELECT 1',
          'CREATE TABLE temp.secret_too (x)',
          'CREATE INDEX temp.secret_index ON secret_too (x)',
          'CREATE TEMP TRIGGER secret_trigger AFTER INSERT ON items BEGIN SELECT 1; END',
        ],
        visible: { temp_objects: 5 },
      },
      {
        name: 'ATTACHed databases',
        change: ["ATTACH 'other.db' AS other"],
        visible: { databases: 'main,temp,other' },
      },
    ];

    for (const c of cases) {
      test(c.name, async () => {
        const { db, path } = opened;
        const change = c.change.map((sql) =>
          sql.replace("'other.db'", `'${join(path!, '..', 'other.db')}'`),
        );
        const seenByA = await server.inRequest(async () => {
          for (const sql of change) await db.run(sql);
          return sqliteState(db);
        });
        assert.deepEqual(
          Object.fromEntries(Object.keys(c.visible).map((key) => [key, seenByA[key]])),
          c.visible,
          'request A changed its connection',
        );
        const opensBefore = opens;
        assert.deepEqual(await server.inRequest(() => sqliteState(db)), fresh);
        assert.equal(opens, opensBefore + 1, 'B got a new connection, set up as the first was');
        assert.equal(db.stats().total, 1);
      });
    }

    test('a request that changed nothing keeps its connection (pragma reads included)', async () => {
      const { db } = opened;
      await server.inRequest(() => db.get('SELECT 1')); // the connection after the cases above
      const opensBefore = opens;
      for (let i = 0; i < 5; i++) {
        await server.inRequest(async () => {
          await db.run('INSERT INTO items (v) VALUES (?)', ['x']);
          await db.get('PRAGMA foreign_keys');
          await db.query('PRAGMA table_info(items)');
          await db.atomic(() => db.run('UPDATE items SET v = ? WHERE id = ?', ['y', 1]));
        });
      }
      assert.equal(opens, opensBefore, 'no connection was opened');
      assert.deepEqual(await server.inRequest(() => sqliteState(db)), fresh);
    });
  });

  test(`${driver}, ':memory:': its one connection is the database, so a pragma set keeps it (and the data)`, async () => {
    const db = newSqlite(driver, { path: ':memory:' });
    const server = await serve(db);
    try {
      await db.run('CREATE TABLE t (x)');
      await db.run('INSERT INTO t VALUES (1)');
      await server.inRequest(() => db.run('PRAGMA cache_size = 100'));
      assert.deepEqual(await server.inRequest(() => db.get('SELECT count(*) AS n FROM t')), {
        n: 1,
      });
    } finally {
      await server.close();
      await db.closePool();
    }
  });
}
