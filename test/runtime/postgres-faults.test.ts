// PostgreSQL faults: killed backends (as in a server restart or a failover) must not crash the
// process, broken connections are dropped and replaced, ordinary SQL errors keep the connection,
// and a forced closePool() really closes the server connections. Plus PgBouncer's transaction mode.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { DbHooksError } from '../../src/runtime/runtime.ts';
import { PostgresDatabase } from '../../src/runtime/runtime-postgres.ts';
import { pgbouncerPath, startPgBouncer } from '../support/pgbouncer.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { openPostgres, sleep, waitFor } from './databases.ts';

async function admin<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** Terminates every other backend of the database; returns how many. */
function terminateAll(url: string): Promise<number> {
  return admin(url, async (client) => {
    const { rows } = await client.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity ' +
        'WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    return rows.length;
  });
}

function backends(url: string): Promise<Array<{ pid: number; state: string | null }>> {
  return admin(url, async (client) => {
    const { rows } = await client.query(
      'SELECT pid, state FROM pg_stat_activity ' +
        'WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    return rows;
  });
}

test('killing every backend mid-run does not crash the process; later requests succeed', async () => {
  const { db, url, cleanup } = await openPostgres({ max: 5, acquireTimeoutMillis: 10_000 });
  const crashes: unknown[] = [];
  const onCrash = (error: unknown) => crashes.push(error);
  process.on('uncaughtException', onCrash);
  try {
    await db.run('CREATE TABLE t (v integer)');
    async function request(i: number): Promise<void> {
      const scope = db.createScope();
      try {
        await scope.connect();
        await scope.run(async () => {
          if (i % 2) {
            await db.atomic(async () => {
              await db.run('INSERT INTO t (v) VALUES ($1)', [i]);
              await db.get('SELECT pg_sleep(0.02)');
            });
          } else {
            await db.get('SELECT pg_sleep(0.02)');
          }
        });
      } finally {
        await scope.release();
      }
    }
    // 200 requests, five at a time on five connections; kill every backend while they run.
    const running = Promise.allSettled(Array.from({ length: 200 }, (_, i) => request(i)));
    await sleep(100);
    const killed = await terminateAll(url!);
    assert.ok(killed >= 1, 'expected live backends to kill');
    const outcomes = await running;
    const failed = outcomes.filter((o) => o.status === 'rejected').length;
    assert.ok(failed >= 1, 'requests in flight during the kill should fail');
    assert.ok(failed <= 10, `only requests in flight may fail, ${failed} did`);
    assert.equal(db.stats().inUse, 0);

    // Kill the now-idle connections too; the pool notices and drops them.
    const idleBefore = db.stats().idle;
    assert.ok(idleBefore >= 1);
    await terminateAll(url!);
    await waitFor(() => db.stats().total === 0);

    const after = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => request(i)));
    assert.deepEqual(
      after.filter((o) => o.status === 'rejected'),
      [],
      'requests after the kill must succeed',
    );
    assert.deepEqual(crashes, []);
    assert.equal(db.stats().inUse, 0);
  } finally {
    process.off('uncaughtException', onCrash);
    await cleanup();
  }
});

test('a connection with a broken backend is destroyed; an SQL error keeps it', async () => {
  const { db, url, cleanup } = await openPostgres({ max: 1 });
  try {
    await db.run('CREATE TABLE u (k integer PRIMARY KEY)');
    const pid = async () => (await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid;
    const first = await pid();
    // An ordinary SQL error (unique violation) leaves the connection healthy: it is reused.
    await db.run('INSERT INTO u (k) VALUES (1)');
    await assert.rejects(db.run('INSERT INTO u (k) VALUES (1)'), { code: '23505' });
    assert.equal(await pid(), first);

    // The backend is killed while a request holds the connection.
    const scope = db.createScope();
    await scope.connect();
    await terminateAll(url!);
    await assert.rejects(scope.run(() => db.get('SELECT 1')));
    await scope.release();
    const second = await pid();
    assert.notEqual(second, first, 'the broken connection must not be reused');
    assert.equal((await backends(url!)).length, 1);
  } finally {
    await cleanup();
  }
});

test('an error event on a checked-out client is caught, and that client is not reused', async () => {
  const { db, cleanup } = await openPostgres({ max: 1 });
  try {
    const pid = async () => (await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid;
    const first = await pid();
    const scope = db.createScope();
    await scope.connect();
    const [client] = [...((db as any).checkedOut as Set<pg.PoolClient>)];
    // What a socket error does while a request holds the client. With no listener this throws.
    client!.emit('error', new Error('simulated socket error'));
    await scope.release();
    assert.notEqual(await pid(), first, 'a client that reported an error must be replaced');
    assert.equal(db.stats().total, 1);
  } finally {
    await cleanup();
  }
});

test('closePool() past its timeout closes connections still in use on the server', async () => {
  const { db, url, cleanup } = await openPostgres({ max: 3, closeTimeoutMillis: 100 });
  try {
    const scopes = [db.createScope(), db.createScope()];
    await Promise.all(scopes.map((s) => s.connect()));
    await scopes[0]!.run(() => db.run('CREATE TEMP TABLE x (v integer)'));
    const inFlight = scopes[1]!.run(() => db.get('SELECT pg_sleep(0.5)'));
    inFlight.catch(() => {});
    assert.equal((await backends(url!)).length, 2);
    const started = Date.now();
    await db.closePool();
    assert.ok(Date.now() - started < 2000);
    await assert.rejects(inFlight, 'the statement on a closed connection fails');
    await Promise.all(scopes.map((s) => s.release()));
    // The server ends a backend when it next reads from its socket: the idle one at once, the
    // busy one when its statement finishes.
    await waitFor(async () => (await backends(url!)).length === 0, 3000);
  } finally {
    await cleanup();
  }
});

test('pgbouncer: transactions with SET LOCAL work; session-level SET is refused', {
  skip: pgbouncerPath() ? false : 'pgbouncer is not installed (apt-get install pgbouncer)',
}, async () => {
  const database = await createTestDatabase();
  const bouncer = await startPgBouncer(database.url, { poolSize: 2 });
  const db = new PostgresDatabase({ connectionString: bouncer.url, max: 20, pgbouncer: true });
  try {
    await db.run('CREATE TABLE t (v integer)');
    // Twenty requests, each holding a connection to PgBouncer, over two server connections.
    const timeouts = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const scope = db.createScope();
        try {
          await scope.connect();
          return await scope.run(() =>
            db.atomic(async () => {
              await db.run(`SET LOCAL statement_timeout = '${i + 1}s'`);
              await db.run('INSERT INTO t (v) VALUES ($1)', [i]);
              await sleep(5);
              const row = await db.get<{ statement_timeout: string }>('SHOW statement_timeout');
              return row!.statement_timeout;
            }),
          );
        } finally {
          await scope.release();
        }
      }),
    );
    assert.deepEqual(
      timeouts,
      Array.from({ length: 20 }, (_, i) => `${i + 1}s`),
    );
    const count = await db.get<{ c: string }>('SELECT count(*) AS c FROM t');
    assert.equal(count!.c, '20');
    // SET LOCAL did not leak out of its transaction.
    assert.deepEqual(await db.get('SHOW statement_timeout'), { statement_timeout: '0' });
    await assert.rejects(db.run("SET statement_timeout = '1s'"), (error: unknown) => {
      assert.ok(error instanceof DbHooksError);
      assert.equal(error.code, 'SESSION_STATE');
      assert.match(error.message, /SET LOCAL/);
      return true;
    });
    await assert.rejects(db.run('LISTEN channel'), { code: 'SESSION_STATE' });
    assert.equal(db.stats().inUse, 0);
  } finally {
    await db.closePool();
    await bouncer.stop();
    await database.drop();
  }
});
