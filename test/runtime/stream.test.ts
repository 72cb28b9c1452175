// db.stream() on every database: rows read as the loop asks for them on the request's
// connection; closed when the loop ends, breaks or throws, and by the release when the request
// ends first (the server-side query ends, the SQLite WAL can be checkpointed); the request's
// other statements refused while it is open; outside a request, a connection borrowed for the
// stream's length. The rows come from a series the database makes (no table to fill).
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import {
  ConnectionStateError,
  createScope,
  type Database,
  ScopeReleasedError,
} from '../../src/runtime/runtime.ts';
import { mysqlAdmin } from '../support/mariadb.ts';
import { admin, identify, kinds, type Opened, waitFor, withDatabase } from './databases.ts';

/** `count` rows numbered from 1, as each database makes a series. */
function series(opened: Opened, count: number): [string, unknown[]] {
  if (opened.url) return ['SELECT n FROM generate_series(1, $1::int) AS n', [count]];
  // MariaDB's Sequence engine (the tests' MySQL is MariaDB).
  if (opened.mysqlUrl) return ['SELECT seq AS n FROM seq_1_to_1000000 WHERE seq <= ?', [count]];
  // Reading the schema starts a read transaction, kept until the statement ends, as a table's
  // rows would.
  return [
    'WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) ' +
      'SELECT n FROM s WHERE (SELECT count(*) FROM sqlite_schema) >= 0',
    [count],
  ];
}

/** What the server still runs for the database besides the looker: PostgreSQL, MySQL. */
async function activeQueries(opened: Opened): Promise<string[]> {
  if (opened.url) {
    return admin(opened.url, async (client) => {
      const { rows } = await client.query<{ query: string }>(
        "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'",
      );
      return rows.map((row) => row.query);
    });
  }
  if (opened.mysqlUrl) {
    return mysqlAdmin(opened.mysqlUrl, async (conn) => {
      const [rows] = await conn.query(
        "SELECT INFO AS query FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND <> 'Sleep'",
      );
      return (rows as Array<{ query: string }>).map((row) => row.query);
    });
  }
  return [];
}

/**
 * SQLite: whether a full checkpoint (TRUNCATE) succeeds now, from a connection of its own, on
 * the driver's library: two copies of SQLite in one process do not see each other's locks.
 */
function checkpoints(path: string, kind: string): boolean {
  const file =
    kind === 'node:sqlite'
      ? new DatabaseSync(path, { timeout: 0 })
      : new BetterSqlite3(path, { timeout: 0 });
  try {
    const result = file.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get() as { busy: number };
    return result.busy === 0;
  } finally {
    file.close();
  }
}

/**
 * Waits until the server runs no query for the database: PostgreSQL closes the cursor before
 * the stream ends; MySQL's cut query ends as its next rows meet the closed socket, a moment
 * later. The deadline only turns a hang into a failure.
 */
async function noQueryLeft(opened: Opened): Promise<void> {
  if (opened.url) assert.deepEqual(await activeQueries(opened), []);
  else await waitFor(async () => (await activeQueries(opened)).length === 0);
}

/** A table with a write in the WAL, so that an open reader has something to pin. */
async function walWithData(db: Database): Promise<void> {
  await db.run('CREATE TABLE IF NOT EXISTS t (n INTEGER)');
  await db.run('INSERT INTO t (n) VALUES (1)');
}

for (const kind of kinds) {
  describe(`${kind.name}: db.stream()`, { skip: kind.skip }, () => {
    test('every row, in order, in batches; then the connection is the request’s again', () =>
      withDatabase(kind, {}, async (opened) => {
        const { db } = opened;
        const [sql, params] = series(opened, 1000);
        const whoami = identify(opened);
        const scope = createScope(db);
        await scope.run(async () => {
          const before = await whoami();
          let expected = 1;
          for await (const row of db.stream<{ n: number }>(sql, params, { batchSize: 64 })) {
            assert.equal(Number(row.n), expected++);
          }
          assert.equal(expected, 1001);
          assert.equal(await whoami(), before, 'the stream ran on the request’s connection');
        });
        await scope.release();
        assert.equal(db.stats().inUse, 0);
      }));

    test('break and throw close it; other statements meanwhile are refused', () =>
      withDatabase(kind, {}, async (opened) => {
        const { db } = opened;
        const [sql, params] = series(opened, 100_000);
        const scope = createScope(db);
        await scope.run(async () => {
          const whoami = identify(opened);
          const before = await whoami();
          for await (const row of db.stream<{ n: number }>(sql, params)) {
            assert.equal(Number(row.n), 1);
            await assert.rejects(db.get('SELECT 1 AS one'), ConnectionStateError);
            await assert.rejects(
              db.atomic(async () => {}),
              ConnectionStateError,
            );
            await assert.rejects(async () => {
              for await (const _ of db.stream(sql, params)) break;
            }, ConnectionStateError);
            break;
          }
          // MySQL cannot end a result early: the cut connection was replaced.
          const after = await whoami();
          if (!opened.mysqlUrl) assert.equal(after, before);
          await noQueryLeft(opened);
          await assert.rejects(async () => {
            for await (const _ of db.stream(sql, params)) throw new Error('boom');
          }, /boom/);
          assert.equal(Number((await db.get<{ one: number }>('SELECT 1 AS one'))!.one), 1);
          await noQueryLeft(opened);
        });
        await scope.release();
        assert.equal(db.stats().inUse, 0);
      }));

    test('the release closes an open stream: the loop throws, the query ends, the WAL is free', () =>
      withDatabase(kind, {}, async (opened) => {
        const { db, path } = opened;
        if (path) await walWithData(db);
        const [sql, params] = series(opened, 1_000_000);
        const scope = createScope(db);
        const rows = scope.run(() => db.stream<{ n: number }>(sql, params, { batchSize: 10 }));
        const first = await scope.run(() => rows.next());
        assert.equal(Number(first.value!.n), 1);
        if (opened.url) assert.equal((await activeQueries(opened)).length, 1, 'the cursor is open');
        if (path)
          assert.equal(checkpoints(path, kind.name), false, 'the open statement pins the WAL');
        await scope.release('client-gone');
        assert.equal(db.stats().inUse, 0);
        await noQueryLeft(opened);
        if (path)
          assert.equal(checkpoints(path, kind.name), true, 'the WAL could not be checkpointed');
        // The rows already read may come; then the loop learns why it ended.
        await assert.rejects(async () => {
          for (;;) if ((await rows.next()).done) break;
        }, ScopeReleasedError);
      }));

    test('inside db.atomic(): a stream left early keeps the transaction, which commits', () =>
      withDatabase(kind, {}, async (opened) => {
        const { db, sql: q } = opened;
        const [sql, params] = series(opened, 100_000);
        await db.run('CREATE TABLE kept (n INTEGER)');
        const scope = createScope(db);
        await scope.run(() =>
          db.atomic(async () => {
            await db.run(q('INSERT INTO kept (n) VALUES (?)'), [1]);
            for await (const _ of db.stream(sql, params)) break;
            await db.run(q('INSERT INTO kept (n) VALUES (?)'), [2]);
          }),
        );
        await scope.release();
        const rows = await db.query<{ n: number }>('SELECT n FROM kept ORDER BY n');
        assert.deepEqual(
          rows.map((row) => Number(row.n)),
          [1, 2],
        );
        await noQueryLeft(opened);
        assert.equal(db.stats().inUse, 0);
      }));

    test('closePool() past its timeout closes a stream left open outside a request', () =>
      withDatabase(kind, { closeTimeoutMillis: 50 }, async (opened) => {
        const { db } = opened;
        const [sql, params] = series(opened, 100_000);
        const rows = db.stream(sql, params, { batchSize: 10 });
        assert.equal((await rows.next()).done, false);
        await db.closePool();
        assert.equal(db.stats().inUse, 0);
        await assert.rejects(async () => {
          for (;;) if ((await rows.next()).done) break;
        });
      }));

    test('outside a request: a connection for the stream’s length', () =>
      withDatabase(kind, {}, async (opened) => {
        const { db } = opened;
        const [sql, params] = series(opened, 1000);
        let count = 0;
        for await (const _ of db.stream(sql, params)) {
          count++;
          assert.equal(db.stats().inUse, 1);
        }
        assert.equal(count, 1000);
        assert.equal(db.stats().inUse, 0);
        for await (const _ of db.stream(sql, params)) break;
        assert.equal(db.stats().inUse, 0);
        await noQueryLeft(opened);
        // A stream never read opens nothing.
        db.stream(sql, params);
        assert.equal(db.stats().inUse, 0);
      }));
  });
}
