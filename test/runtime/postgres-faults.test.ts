// PostgreSQL faults: killed backends (as in a server restart or a failover) must not crash the
// process, broken connections are dropped and replaced, ordinary SQL errors keep the connection,
// and a forced closePool() really closes the server connections. Plus PgBouncer's transaction mode.
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import type pg from 'pg';
import {
  createScope,
  DatabaseUnavailableError,
  DbHooksError,
  PoolClosedError,
  PoolTimeoutError,
  ServiceUnavailableError,
} from '../../src/runtime/runtime.ts';
import { PostgresDatabase } from '../../src/runtime/runtime-postgres.ts';
import { pgbouncerPath, startPgBouncer } from '../support/pgbouncer.ts';
import { createTestDatabase, freePort, postgresUrl } from '../support/postgres.ts';
import {
  admin,
  capturingLogger,
  countReleases,
  openPostgres,
  recordAcquires,
  settlesWithin,
  sleep,
  waitFor,
} from './databases.ts';

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
      const scope = createScope(db);
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
    assert.ok(idleBefore >= 1, `${idleBefore} idle`);
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
    const scope = createScope(db);
    await scope.connect();
    await terminateAll(url!);
    // A lost connection is the 503 a client may see, never the driver's own error.
    await assert.rejects(
      scope.run(() => db.get('SELECT 1')),
      DatabaseUnavailableError,
    );
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
    const acquired = recordAcquires<pg.PoolClient>(db);
    const scope = createScope(db);
    await scope.connect();
    const [client] = acquired;
    assert.equal(acquired.length, 1);
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
    const scopes = [createScope(db), createScope(db)];
    await Promise.all(scopes.map((s) => s.connect()));
    await scopes[0]!.run(() => db.run('CREATE TEMP TABLE x (v integer)'));
    // The in-flight statement waits for a lock the test holds until closePool() has returned.
    const { inFlight } = await admin(url!, async (blocker) => {
      await blocker.query('SELECT pg_advisory_lock(42)');
      const statement = scopes[1]!.run(() => db.get('SELECT pg_advisory_xact_lock(42)'));
      statement.catch(() => {});
      assert.equal((await backends(url!)).length, 3);
      const closing = db.closePool();
      assert.ok(await settlesWithin(closing, 100 * 20), 'closePool() waited for the statement');
      await closing;
      return { inFlight: statement };
    });
    // The statement cut off by the forced close says the server is shutting down.
    await assert.rejects(inFlight, (error: unknown) => {
      assert.ok(error instanceof PoolClosedError, `got ${String(error)}`);
      assert.match(error.message, /shutting down/);
      assert.doesNotMatch(error.message, /retried/);
      return true;
    });
    await Promise.all(scopes.map((s) => s.release()));
    // The server ends a backend when it next reads from its socket: the idle one at once, the
    // busy one when its statement finishes (the lock went with the blocker's session).
    await waitFor(async () => (await backends(url!)).length === 0);
  } finally {
    await cleanup();
  }
});

/** What a client may see: no host, port, driver text or operator advice. */
function assertClientSafe(message: string, port?: number): void {
  for (const secret of [
    /127\.0\.0\.1/,
    /localhost/,
    /ECONN/,
    /DATABASE_URL/,
    /connect/i,
    /postgres/i,
  ]) {
    assert.doesNotMatch(message, secret);
  }
  if (port !== undefined) assert.doesNotMatch(message, new RegExp(String(port)));
}

for (const inTransaction of [true, false]) {
  const where = inTransaction ? 'inside db.atomic()' : 'in a request';
  test(`a backend terminated between two statements ${where}: 503, the client is discarded, the pool serves again`, async () => {
    const logger = capturingLogger();
    const { db, url, cleanup } = await openPostgres({ max: 1, logger });
    const crashes: unknown[] = [];
    const onCrash = (error: unknown) => crashes.push(error);
    process.on('uncaughtException', onCrash);
    try {
      await db.run('CREATE TABLE t (v integer)');
      const releases = countReleases(db);
      const scope = createScope(db, 'POST /t');
      let pid: number | undefined;
      let resume!: () => void;
      const paused = new Promise<void>((resolve) => {
        resume = resolve;
      });
      const handler = async () => {
        await db.run('INSERT INTO t (v) VALUES (1)');
        pid = (await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid;
        await paused; // e.g. a call to another service, while the database restarts
        await db.run('INSERT INTO t (v) VALUES (2)');
      };
      const outcome = scope.run(() => (inTransaction ? db.atomic(handler) : handler()));
      outcome.catch(() => {});
      await waitFor(() => pid !== undefined);
      await admin(url!, (client) => client.query('SELECT pg_terminate_backend($1)', [pid]));
      await waitFor(async () => !(await backends(url!)).some((b) => b.pid === pid));
      await sleep(50); // the client reads the server's goodbye
      resume();
      await assert.rejects(outcome, (error: unknown) => {
        assert.ok(error instanceof DatabaseUnavailableError, `got ${String(error)}`);
        assert.ok(error instanceof ServiceUnavailableError, 'a 503 for every framework');
        assert.deepEqual([error.status, error.statusCode, error.expose], [503, 503, true]);
        assertClientSafe(error.message);
        return true;
      });
      assert.ok(
        logger.errors.some((line) => /lost the PostgreSQL connection/.test(line)),
        `logged: ${JSON.stringify(logger.errors)}`,
      );
      await scope.release();
      assert.deepEqual(
        [releases.count, releases.discarded],
        [1, 1],
        'the broken client is discarded',
      );
      assert.equal(db.stats().inUse, 0);

      // The pool serves the next request on a new connection.
      const next = createScope(db, 'GET /t');
      const rows = await next.run(async () => {
        const row = await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        assert.notEqual(row!.pid, pid);
        return db.query<{ v: number }>('SELECT v FROM t ORDER BY v');
      });
      await next.release();
      assert.deepEqual(rows, inTransaction ? [] : [{ v: 1 }], 'the transaction was rolled back');
      assert.equal(db.stats().inUse, 0);
      assert.deepEqual(crashes, []);
    } finally {
      process.off('uncaughtException', onCrash);
      await cleanup();
    }
  });
}

test("the pool timeout is the runtime's own deadline, not pg-pool's", async () => {
  const logger = capturingLogger();
  const { db, cleanup } = await openPostgres({ max: 1, acquireTimeoutMillis: 600, logger });
  try {
    const acquired = recordAcquires(db);
    const holder = createScope(db);
    await holder.connect();
    const started = performance.now();
    const checkout = createScope(db).connect();
    assert.ok(await settlesWithin(checkout, 600 * 10), 'still waiting past acquireTimeoutMillis');
    await assert.rejects(checkout, (error: unknown) => {
      assert.ok(error instanceof PoolTimeoutError, `got ${String(error)}`);
      assert.equal(error.status, 503);
      return true;
    });
    const ms = performance.now() - started;
    assert.ok(ms >= 580, `timed out after ${ms} ms`);
    // The second checkout never reached pg's pool: the timeout cannot depend on pg's wording.
    assert.equal(acquired.length, 1);
    assert.equal(logger.errors.length, 1);
    await holder.release();
    assert.deepEqual(await db.get('SELECT 1 AS one'), { one: 1 });
  } finally {
    await cleanup();
  }
});

test('an unreachable server: DatabaseUnavailableError, safe for the client; the detail is logged', async () => {
  const port = await freePort(); // nothing listens there
  const logger = capturingLogger();
  const db = new PostgresDatabase({
    connectionString: `postgres://postgres:secret@127.0.0.1:${port}/app`,
    max: 2,
    acquireTimeoutMillis: 1000,
    logger,
  });
  try {
    for (const attempt of [() => db.get('SELECT 1'), () => createScope(db).connect()]) {
      await assert.rejects(attempt(), (error: unknown) => {
        assert.ok(error instanceof DatabaseUnavailableError, `got ${String(error)}`);
        assert.deepEqual([error.status, error.statusCode, error.expose], [503, 503, true]);
        assertClientSafe(error.message, port);
        assert.doesNotMatch(error.message, /secret/);
        assert.equal(error.getResponse().status, 503);
        return true;
      });
    }
    assert.equal(logger.errors.length, 2);
    for (const line of logger.errors) {
      assert.match(line, /ECONNREFUSED/);
      assert.match(line, new RegExp(String(port)));
      assert.match(line, /DATABASE_URL/);
    }
    assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
  } finally {
    await db.closePool();
  }
});

test('a database or role that does not exist: DatabaseUnavailableError, the detail logged', async () => {
  const server = new URL(await postgresUrl());
  for (const [user, database, detail] of [
    ['postgres', 'no_such_database', /database "no_such_database" does not exist/],
    ['no_such_role', 'postgres', /role "no_such_role" does not exist/],
  ] as const) {
    const url = new URL(server);
    url.username = user;
    url.pathname = `/${database}`;
    const logger = capturingLogger();
    const db = new PostgresDatabase({ connectionString: url.toString(), max: 1, logger });
    try {
      await assert.rejects(db.get('SELECT 1'), (error: unknown) => {
        assert.ok(error instanceof DatabaseUnavailableError, `got ${String(error)}`);
        assertClientSafe(error.message, Number(url.port));
        assert.doesNotMatch(error.message, /no_such/);
        return true;
      });
      assert.equal(logger.errors.length, 1);
      assert.match(logger.errors[0]!, detail);
      assert.equal(db.stats().inUse, 0);
    } finally {
      await db.closePool();
    }
  }
});

test('a server that accepts but never answers: DatabaseUnavailableError at connectionTimeoutMillis, no hang', async () => {
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => {
    sockets.add(socket);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address() as { port: number };
  const logger = capturingLogger();
  const db = new PostgresDatabase({
    connectionString: `postgres://postgres@127.0.0.1:${port}/app`,
    max: 1,
    // The wait to open a connection has its own bound, pg's option.
    connectionTimeoutMillis: 300,
    logger,
  });
  try {
    const started = performance.now();
    const statement = db.get('SELECT 1');
    assert.ok(await settlesWithin(statement, 300 * 10), 'still waiting for the silent server');
    await assert.rejects(statement, (error: unknown) => {
      assert.ok(error instanceof ServiceUnavailableError, `got ${String(error)}`);
      assertClientSafe(error.message, port);
      return true;
    });
    const ms = performance.now() - started;
    assert.ok(ms >= 280, `failed after ${ms} ms`);
    assert.equal(logger.errors.length, 1);
    assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
  } finally {
    await db.closePool();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
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
        const scope = createScope(db);
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
      assert.ok(error instanceof DbHooksError, `got ${String(error)}`);
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
