// MySQL (MariaDB): one request's session state never reaches the next request on the same
// connection (issue 23, as session-state.test.ts shows it for PostgreSQL and SQLite). Each request
// runs over real HTTP through enterRequest() on a pool of ONE connection, so request B gets the
// very connection request A used: B sees what a new connection sees, the onConnect hook's
// settings and mysql2's own (charset) included, on the same server connection (reset in place by
// COM_RESET_CONNECTION). A request that changed nothing is not reset. Plus what counts as a change.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { MysqlDatabase } from '../../src/runtime/runtime-mysql.ts';
import { mysqlChangesSession } from '../../src/runtime/runtime-session.ts';
import { mysqlAdmin } from '../support/mariadb.ts';
import { mysqlSkipReason, type Opened, openMysql } from './databases.ts';
import { serve } from './request-server.ts';

/** Everything a request can leave on a MySQL session, as this session sees it. */
const STATE = `SELECT
  CONNECTION_ID() AS id,
  @tenant AS tenant,
  @hook AS hook,
  @@session.time_zone AS time_zone,
  @@session.sql_mode AS sql_mode,
  @@session.wait_timeout AS wait_timeout,
  @@collation_connection AS collation,
  DATABASE() AS db,
  IS_USED_LOCK('cdh-lock') IS NOT NULL AS locked,
  (SELECT count(*) FROM shadowed) AS shadowed_rows,
  @@in_transaction AS in_transaction`;

type State = Record<string, unknown> & { id: number };

interface Case {
  name: string;
  change: (db: MysqlDatabase) => Promise<unknown>;
  /** What A sees of its change, to show it did change something. */
  visible: Partial<State>;
}

const cases: Case[] = [
  {
    name: 'user variables (SET @v, SELECT @v := ...)',
    change: (db) => db.run("SET @tenant = 'tenant-a'"),
    visible: { tenant: 'tenant-a' },
  },
  {
    name: 'user variables assigned in a SELECT',
    change: (db) => db.get("SELECT @tenant := 'tenant-b' AS v"),
    visible: { tenant: 'tenant-b' },
  },
  {
    name: 'SET SESSION, SET @@, and the hook-set variables overwritten',
    change: async (db) => {
      await db.run("SET SESSION sql_mode = 'ANSI_QUOTES', @@session.wait_timeout = 7");
      await db.run("SET time_zone = '-05:00', @hook = 'changed'");
    },
    visible: { sql_mode: 'ANSI_QUOTES', wait_timeout: 7, time_zone: '-05:00', hook: 'changed' },
  },
  {
    // A temporary table hides the real one of its name while it lasts.
    name: 'temporary tables',
    change: async (db) => {
      await db.run('CREATE TEMPORARY TABLE shadowed (x int)');
      await db.run('INSERT INTO shadowed VALUES (1)');
    },
    visible: { shadowed_rows: 1 },
  },
  {
    name: 'GET_LOCK',
    change: (db) => db.get("SELECT GET_LOCK('cdh-lock', 0) AS got"),
    visible: { locked: 1 },
  },
  {
    name: 'a BEGIN run by hand and left open',
    change: (db) => db.run('BEGIN'),
    visible: { in_transaction: 1 },
  },
];

describe('mysql: a request that changed session state leaves none for the next', {
  skip: mysqlSkipReason,
}, () => {
  let opened: Opened<MysqlDatabase>;
  let server: Awaited<ReturnType<typeof serve>>;
  let fresh: State;
  let hookRuns = 0;
  let resets = 0;

  before(async () => {
    opened = await openMysql({
      max: 1,
      // mysql2's own option, sent in the handshake: a reset keeps it.
      charset: 'LATIN1_SWEDISH_CI',
      onConnect: async (conn) => {
        hookRuns++;
        await conn.query("SET @hook = 'on', time_zone = '+01:00'");
      },
    });
    const driver = (opened.db as any).driver;
    const original = driver.resetSession.bind(driver);
    driver.resetSession = (conn: unknown) => {
      resets++;
      return original(conn);
    };
    await opened.db.run('CREATE TABLE shadowed (x int)');
    server = await serve(opened.db);
    fresh = (await server.inRequest(() => opened.db.get<State>(STATE))) as State;
    assert.equal(fresh.hook, 'on');
    assert.equal(fresh.time_zone, '+01:00');
    assert.equal(fresh.collation, 'latin1_swedish_ci');
    assert.equal(resets, 0);
  });

  after(async () => {
    await server?.close();
    await opened?.cleanup();
  });

  for (const { name, change, visible } of cases) {
    test(name, async () => {
      const resetsBefore = resets;
      const seen = await server.inRequest(async () => {
        await change(opened.db);
        return opened.db.get<State>(STATE);
      });
      for (const [key, value] of Object.entries(visible)) {
        assert.equal(String(seen![key]), String(value), `A sees its ${key}`);
      }
      const next = await server.inRequest(() => opened.db.get<State>(STATE));
      assert.deepEqual(next, fresh, 'B sees a new connection, on the same server connection');
      assert.equal(resets, resetsBefore + 1);
    });
  }

  test('a BEGIN left open after statements that return no rows is rolled back too', async () => {
    // mysql2 updates its status flags after rows only: OK packets carry them as well.
    await server.inRequest(async () => {
      await opened.db.run('BEGIN');
      await opened.db.run('INSERT INTO shadowed VALUES (5)');
    });
    const next = await server.inRequest(() => opened.db.get<State>(STATE));
    assert.deepEqual(next, fresh);
    const rows = await mysqlAdmin(opened.mysqlUrl!, async (conn) => {
      const [found] = await conn.query('SELECT count(*) AS n FROM shadowed');
      return Number((found as Array<{ n: number }>)[0]!.n);
    });
    assert.equal(rows, 0, 'the insert was rolled back');
  });

  test('the lock is free for everyone once B has the connection', async () => {
    await server.inRequest(() => opened.db.get("SELECT GET_LOCK('cdh-lock', 0)"));
    await server.inRequest(() => opened.db.get('SELECT 1'));
    const free = await mysqlAdmin(opened.mysqlUrl!, async (conn) => {
      const [rows] = await conn.query("SELECT IS_FREE_LOCK('cdh-lock') AS free");
      return (rows as Array<{ free: number }>)[0]!.free;
    });
    assert.equal(free, 1);
  });

  test('LOCK TABLES ends with the request', async () => {
    await opened.db.run('CREATE TABLE IF NOT EXISTS locked (x int)');
    await server.inRequest(() => opened.db.run('LOCK TABLES locked WRITE'));
    await server.inRequest(() => opened.db.get('SELECT 1'));
    // Another connection can write: the lock went with the reset.
    await mysqlAdmin(opened.mysqlUrl!, (conn) => conn.query('INSERT INTO locked VALUES (1)'));
  });

  test('a request that changed nothing is not reset, and the hook ran once', async () => {
    const resetsBefore = resets;
    const hooksBefore = hookRuns;
    for (let i = 0; i < 3; i++) {
      await server.inRequest(async () => {
        await opened.db.get("SELECT @tenant AS t, 'SET @x = 1' AS text");
        await opened.db.atomic(() => opened.db.get('SELECT 1'));
      });
    }
    assert.equal(resets, resetsBefore);
    assert.equal(hookRuns, hooksBefore);
    const next = await server.inRequest(() => opened.db.get<State>(STATE));
    assert.equal(next!.id, fresh.id, 'still the first connection');
  });
});

test('mysqlChangesSession: what changes the session, and what only looks like it', () => {
  const changes = [
    "SET @tenant = 'a'",
    'set session sql_mode = ""',
    'SET @@session.wait_timeout = 5',
    "SET NAMES 'latin1'",
    'SET ROLE admin',
    'SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE',
    "/* why */ SET time_zone = '+00:00'",
    'SELECT @v := 1',
    'SELECT id INTO @v FROM t LIMIT 1',
    "SELECT GET_LOCK('x', 0)",
    'CREATE TEMPORARY TABLE t (x int)',
    'LOCK TABLES t WRITE',
    "PREPARE s FROM 'SELECT 1'",
    'USE other',
    'HANDLER t OPEN',
    'SELECT 1; SET @a = 1',
  ];
  const plain = [
    'SELECT 1',
    "UPDATE t SET x = 1 WHERE name = 'SET @a = 1'",
    "SELECT 'GET_LOCK(x)' AS text",
    'SET TRANSACTION ISOLATION LEVEL READ COMMITTED',
    "INSERT INTO t (email) VALUES ('a@b.c')",
    'SELECT @tenant, @@session.sql_mode',
    '-- SET @a = 1\nSELECT 1',
    "SELECT 'it''s :=' AS a, \"x := y\" AS b",
    'CREATE TABLE t (x int)',
  ];
  for (const sql of changes) assert.equal(mysqlChangesSession(sql), true, sql);
  for (const sql of plain) assert.equal(mysqlChangesSession(sql), false, sql);
});
