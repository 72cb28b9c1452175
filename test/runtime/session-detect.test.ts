// Which statements mark a connection for a reset (runtime-session): each form of session state
// PostgreSQL and SQLite have, and the look-alikes that must not count (a request that changed
// nothing pays no reset): UPDATE ... SET, SET LOCAL, set_config(..., true), the _xact_ advisory
// locks, ON COMMIT DROP, text inside string literals and comments, pragma reads.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  newConnectionPragmas,
  postgresSessionChange,
  sqliteChangesSession,
} from '../../src/runtime/runtime-session.ts';

const postgresChanges: [string, string][] = [
  ["SET app.tenant = 'tenant-a'", 'SET'],
  ['set statement_timeout = 1', 'SET'],
  ['SET ROLE app_reader', 'SET'],
  ['SET SESSION AUTHORIZATION app_reader', 'SET'],
  ['SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', 'SET'],
  ["SET TIME ZONE 'UTC'", 'SET'],
  ['/* who */ SET app.user_id = 7', 'SET'],
  ['-- who\nSET app.user_id = 7', 'SET'],
  ["SELECT 1; SET app.tenant = 'a'", 'SET'],
  ['BEGIN; SET LOCAL a.b = 1; COMMIT; SET c.d = 2', 'SET'],
  ['RESET app.hook', 'RESET'],
  ['reset all', 'RESET'],
  ['DISCARD ALL', 'DISCARD'],
  ["SELECT set_config('app.user_id', $1, false)", 'set_config(..., false)'],
  ["select set_config('app.user_id', $1, $2)", 'set_config(..., false)'],
  ["SELECT set_config('a', 'b', true), set_config('c', 'd', false)", 'set_config(..., false)'],
  ['SELECT pg_advisory_lock(42)', 'pg_advisory_lock()'],
  ['SELECT pg_advisory_lock_shared(1, 2)', 'pg_advisory_lock()'],
  ['select pg_try_advisory_lock(42)', 'pg_advisory_lock()'],
  ['SELECT pg_try_advisory_lock_shared(42)', 'pg_advisory_lock()'],
  ['LISTEN events', 'LISTEN'],
  ['UNLISTEN *', 'LISTEN'],
  ['PREPARE find AS SELECT $1::int', 'PREPARE'],
  ['DEALLOCATE find', 'PREPARE'],
  ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'DECLARE ... WITH HOLD'],
  ['CREATE TEMP TABLE secret (x int)', 'a temporary table'],
  ['create temporary table t as select 1', 'a temporary table'],
  ['CREATE GLOBAL TEMPORARY TABLE t (x int)', 'a temporary table'],
  ['CREATE OR REPLACE TEMP VIEW v AS SELECT 1', 'a temporary table'],
  ['CREATE TEMP TABLE t (x int) ON COMMIT DELETE ROWS', 'a temporary table'],
  ['CREATE TABLE pg_temp.t (x int)', 'a temporary table'],
  ['SELECT * INTO TEMP TABLE copy FROM items', 'a temporary table'],
  ['CREATE TEMP TABLE a (x int) ON COMMIT DROP; CREATE TEMP TABLE b (x int)', 'a temporary table'],
  ["LOAD 'auto_explain'", 'LOAD'],
];

const postgresUnchanged = [
  'SELECT id, name FROM users WHERE id = $1',
  'UPDATE t SET x = 1',
  'update t\n  set x = $1\n  where id = $2',
  'INSERT INTO t (a) VALUES ($1) ON CONFLICT (a) DO UPDATE SET a = excluded.a',
  'SET LOCAL statement_timeout = 100',
  'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
  'SET CONSTRAINTS ALL DEFERRED',
  "SELECT set_config('app.user_id', $1, true)",
  "SELECT set_config('app.list', 'a,b', true)",
  "SELECT set_config('app.user_id', lower($1), true)",
  "SELECT current_setting('app.user_id', true)",
  'SELECT pg_advisory_xact_lock(42)',
  'SELECT pg_try_advisory_xact_lock_shared(42)',
  'SELECT pg_advisory_unlock(42)',
  'DECLARE c CURSOR FOR SELECT 1',
  'CREATE TEMP TABLE t (x int) ON COMMIT DROP',
  'CREATE TABLE t (x int)',
  'INSERT INTO temp_items VALUES (1)',
  "SELECT 'a; SET b = 1'",
  'SELECT 1 -- ; SET b = 1',
  "INSERT INTO logs (line) VALUES ('called set_config(''a'', ''b'', false)')",
  'BEGIN',
  'SAVEPOINT db_hooks_1',
  'SHOW statement_timeout',
];

test('postgres: every form of session state is seen, named, with what to use instead', () => {
  for (const [sql, statement] of postgresChanges) {
    const change = postgresSessionChange(sql);
    assert.equal(change?.statement, statement, sql);
    assert.match(change.instead, /\S/, sql);
  }
});

test('postgres: look-alikes that change nothing for the next request are not', () => {
  for (const sql of postgresUnchanged) assert.equal(postgresSessionChange(sql), undefined, sql);
});

test('sqlite: pragma sets, ATTACH, DETACH and temporary objects are seen; pragma reads are not', () => {
  const changes = [
    'PRAGMA foreign_keys = 0',
    'pragma query_only=1',
    'PRAGMA main.cache_size = 100',
    'PRAGMA "main".synchronous = off',
    'PRAGMA synchronous(0)',
    'PRAGMA user_version = 3',
    '/* x */ PRAGMA foreign_keys = 1',
    "ATTACH 'other.db' AS other",
    'DETACH other',
    'CREATE TEMP TABLE t (x)',
    'CREATE TEMPORARY VIEW v AS SELECT 1',
    'CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END',
    'CREATE TABLE temp.t (x)',
    'CREATE TABLE IF NOT EXISTS "temp".t (x)',
    'CREATE UNIQUE INDEX temp.i ON t (x)',
    'CREATE VIRTUAL TABLE temp.f USING fts5(body)',
  ];
  for (const sql of changes) assert.equal(sqliteChangesSession(sql), true, sql);
  const unchanged = [
    'SELECT 1',
    'PRAGMA foreign_keys',
    'PRAGMA table_info(items)',
    'PRAGMA main.index_list("items")',
    'PRAGMA foreign_key_check',
    'PRAGMA integrity_check(10)',
    'PRAGMA wal_checkpoint(TRUNCATE)',
    'CREATE TABLE t (x)',
    'CREATE TABLE temporary_items (x)',
    'UPDATE t SET x = 1',
    'INSERT INTO temp_items VALUES (1)',
  ];
  for (const sql of unchanged) assert.equal(sqliteChangesSession(sql), false, sql);
});

test('sqlite: a new connection gets the default pragmas, the configured ones over them', () => {
  assert.deepEqual(newConnectionPragmas({}), ['journal_mode = wal', 'synchronous = normal']);
  assert.deepEqual(newConnectionPragmas({ pragmas: { synchronous: 'full', foreign_keys: 1 } }), [
    'journal_mode = wal',
    'synchronous = full',
    'foreign_keys = 1',
  ]);
  assert.deepEqual(newConnectionPragmas({ readonly: true }), []);
});
