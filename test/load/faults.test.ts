// Faults under load, against generated apps: PostgreSQL and MySQL (MariaDB) restarted mid-run,
// a pool exhausted by slow requests (on both), and SQLite writers holding transactions across
// awaits. On MySQL the server's PROCESSLIST must show no session the app lost track of.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import BetterSqlite3 from 'better-sqlite3';
import { mysqlOff, mysqlSkipReason } from '../runtime/databases.ts';
import {
  appsDir,
  generate,
  prepareDatabase,
  type RunningServer,
  removeSqlite,
  startServer,
} from '../support/apps.ts';
import {
  mysqlAdmin,
  type RunningMariadb,
  serverSessions,
  startMariadb,
} from '../support/mariadb.ts';
import { type RunningPostgres, startPostgres } from '../support/postgres.ts';

interface Outcome {
  at: number;
  /** When the answer (or the failure) came. */
  end: number;
  status: number;
  error?: string;
}

async function hit(url: string, init?: RequestInit): Promise<Outcome> {
  const at = Date.now();
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
    const body = (await res.json().catch(() => ({}))) as { error?: string };
    return { at, end: Date.now(), status: res.status, error: body.error };
  } catch (error) {
    return { at, end: Date.now(), status: 0, error: String(error) };
  }
}

/**
 * 8 clients loop on GET /users/:id while the server goes down for 1.5 s (`down`, then `up`):
 * every request before it succeeds, every failure is a 503 during the outage (or in the 3 s
 * after, while the pool reconnects), and every request from then on succeeds again.
 */
async function loadThroughRestart(
  app: RunningServer,
  down: () => unknown,
  up: () => unknown,
): Promise<void> {
  const outcomes: Outcome[] = [];
  let running = true;
  const workers = Array.from({ length: 8 }, async () => {
    while (running) {
      outcomes.push(await hit(`${app.url}/users/${1 + Math.floor(Math.random() * 1000)}`));
      await sleep(5);
    }
  });
  try {
    await sleep(2000);
    const downAt = Date.now();
    await down();
    await sleep(1500);
    await up();
    const upAt = Date.now();
    await sleep(5000);
    running = false;
    await Promise.all(workers);

    assert.equal(app.child.exitCode, null, 'the app process died');
    const before = outcomes.filter((o) => o.at < downAt - 100);
    const recovered = outcomes.filter((o) => o.at > upAt + 3000);
    const failed = outcomes.filter((o) => o.status !== 200);
    assert.ok(
      before.length > 20 && recovered.length > 20,
      `too few requests to judge: ${before.length} before, ${recovered.length} after`,
    );
    assert.deepEqual(
      before.filter((o) => o.status !== 200),
      [],
      'requests failed before the restart',
    );
    assert.deepEqual(
      recovered.filter((o) => o.status !== 200),
      [],
      'requests still failed 3 s after the server came back',
    );
    assert.ok(failed.length > 0, 'no request failed while the server was down');
    for (const outcome of failed) {
      assert.ok(
        outcome.at >= downAt - 100 && outcome.at <= upAt + 3000,
        `a request failed outside the outage: ${JSON.stringify(outcome)}`,
      );
      assert.equal(outcome.status, 503, `expected 503, got ${JSON.stringify(outcome)}`);
    }
    assert.equal((await poolStats(app)).inUse, 0);
  } finally {
    running = false;
    await Promise.all(workers);
  }
}

async function poolStats(app: RunningServer): Promise<{ inUse: number; total: number }> {
  const stats = (await (await fetch(`${app.url}/__stats`)).json()) as {
    pool: { inUse: number; total: number };
  };
  return stats.pool;
}

/**
 * 10 requests that hold their connection 1.5 s on a pool of 2 (acquire timeout 500 ms): 2 are
 * served, 8 get a 503 at their own deadline, and then throughput resumes.
 */
async function burstOverPool(app: RunningServer): Promise<void> {
  const slow = await Promise.all(Array.from({ length: 10 }, () => hit(`${app.url}/slow?ms=1500`)));
  const ok = slow.filter((o) => o.status === 200);
  const refused = slow.filter((o) => o.status === 503);
  assert.equal(ok.length, 2, JSON.stringify(slow));
  assert.equal(refused.length, 8, JSON.stringify(slow));
  for (const outcome of refused) assert.match(outcome.error ?? '', /within 500 ms/);
  // Refused at their own deadline, not when a connection came free: every 503 came before
  // the first 200, whose statement sleeps 1.5 s (the acquire deadline is 0.5 s).
  const firstServed = Math.min(...ok.map((o) => o.end));
  for (const outcome of refused) {
    assert.ok(outcome.end < firstServed, `a refused request waited for a free connection`);
  }
  // Throughput resumes once the slow requests are done.
  const after = await Promise.all(
    Array.from({ length: 20 }, (_, i) => hit(`${app.url}/users/${i + 1}`)),
  );
  assert.deepEqual(
    after.map((o) => o.status),
    Array(20).fill(200),
  );
}

describe('PostgreSQL restarted in the middle of a load run', () => {
  let server: RunningPostgres;
  before(async () => {
    server = await startPostgres();
    await generate('postgres');
  });
  after(() => server.stop());

  for (const framework of [
    'express',
    'fastify',
    'koa',
    'hono',
    'node-http',
    'fetch',
    'hooks',
  ] as const) {
    test(`${framework}: 503 only while the server is down, then every request succeeds`, async () => {
      const env = await prepareDatabase('postgres', server.url);
      const app = await startServer(framework, 'generated', 'postgres', {
        ...env,
        ACQUIRE_TIMEOUT_MS: '1000',
      });
      try {
        // Fast shutdown: every backend is terminated.
        await loadThroughRestart(
          app,
          () => server.shutdown(),
          () => server.restart(),
        );
      } finally {
        await app.stop();
      }
    });
  }
});

// A server of this file's own (not the run's), since it is restarted. Not registered on the
// lines without MySQL (TEST_MYSQL=off), as in the other suites.
if (!mysqlOff) {
  describe('MySQL restarted in the middle of a load run', { skip: mysqlSkipReason }, () => {
    let server: RunningMariadb;
    let url: string;
    before(async () => {
      server = await startMariadb();
      await mysqlAdmin(server.url, (conn) => conn.query('CREATE DATABASE load_faults'));
      url = server.url.replace(/\/mysql$/, '/load_faults');
      await generate('mysql');
    });
    after(() => server?.stop());

    // What differs by framework on a lost server is how its 503 is made, which adapters.test.ts
    // checks for every target on MySQL; the two request lifecycles (node:http's and the Web
    // fetch one) are what a restart under load can tell apart, so Express and fetch stand for
    // them here, and the burst over the pool runs on Koa.
    for (const framework of ['express', 'fetch'] as const) {
      test(`${framework}: 503 only while the server is down, then every request succeeds, and no connection left on the server`, async () => {
        const env = await prepareDatabase('mysql', url);
        const app = await startServer(framework, 'generated', 'mysql', {
          ...env,
          ACQUIRE_TIMEOUT_MS: '1000',
        });
        try {
          // A normal shutdown: mariadbd closes every connection, and refuses new ones until up.
          await loadThroughRestart(
            app,
            () => server.shutdown(),
            () => server.restart(),
          );
          // Per the server's PROCESSLIST: the app's sessions are exactly the pool's connections,
          // none lost track of (the ones from before the restart are gone with it).
          let sessions = await serverSessions(url);
          let pool = await poolStats(app);
          for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(100)) {
            if (sessions.length === pool.total) break;
            sessions = await serverSessions(url);
            pool = await poolStats(app);
          }
          assert.equal(sessions.length, pool.total, JSON.stringify({ sessions, pool }));
          assert.ok(
            sessions.every((session) => session.COMMAND === 'Sleep'),
            `a session still busy: ${JSON.stringify(sessions)}`,
          );
        } finally {
          await app.stop();
        }
        let left = await serverSessions(url);
        for (const deadline = Date.now() + 5000; left.length > 0 && Date.now() < deadline; ) {
          await sleep(100);
          left = await serverSessions(url);
        }
        assert.deepEqual(left, [], 'sessions outlived the app');
      });
    }

    test('burst over the pool: with max 2, waiting requests get 503 at the acquire deadline, then all serve', async () => {
      const env = await prepareDatabase('mysql', url);
      const app = await startServer('koa', 'generated', 'mysql', {
        ...env,
        POOL_MAX: '2',
        ACQUIRE_TIMEOUT_MS: '500',
      });
      try {
        await burstOverPool(app);
        assert.ok((await serverSessions(url)).length <= 2, 'more sessions than the pool has');
      } finally {
        await app.stop();
      }
    });
  });
}

describe('pool exhaustion', () => {
  let server: RunningPostgres;
  before(async () => {
    server = await startPostgres();
    await generate('postgres');
  });
  after(() => server.stop());

  test('with max 2, waiting requests get 503 at the acquire deadline and none hangs', async () => {
    const env = await prepareDatabase('postgres', server.url);
    const app = await startServer('koa', 'generated', 'postgres', {
      ...env,
      POOL_MAX: '2',
      ACQUIRE_TIMEOUT_MS: '500',
    });
    try {
      await burstOverPool(app);
    } finally {
      await app.stop();
    }
  });
});

describe('SQLite writers', () => {
  before(() => generate('sqlite'));

  test('concurrent transactions with awaits inside: none reaches the busy handler', async (t) => {
    const path = join(appsDir, `writers-${process.pid}.db`);
    t.after(() => removeSqlite(path));
    const env = await prepareDatabase('sqlite', path);
    // No busy timeout: a writer that found the database locked (and would block the event loop
    // in SQLite's busy handler) fails at once with SQLITE_BUSY, a 500.
    const app = await startServer('express', 'generated', 'sqlite', {
      ...env,
      POOL_MAX: '8',
      SQLITE_BUSY_TIMEOUT_MS: '0',
    });
    try {
      // 40 clients, 10 transfers each, so the app always has writers queued on the write lock.
      const outcomes = (
        await Promise.all(
          Array.from({ length: 40 }, async () => {
            const mine: Outcome[] = [];
            for (let i = 0; i < 10; i++) {
              mine.push(await hit(`${app.url}/transfer`, { method: 'POST' }));
            }
            return mine;
          }),
        )
      ).flat();
      assert.equal(outcomes.length, 400);
      assert.deepEqual(
        outcomes.filter((o) => o.status !== 200),
        [],
      );
      const stats = (await (await fetch(`${app.url}/__stats`)).json()) as {
        pool: { inUse: number };
      };
      assert.equal(stats.pool.inUse, 0);
      const check = new BetterSqlite3(path, { readonly: true });
      const balances = check.prepare('SELECT balance FROM accounts ORDER BY id').pluck().all();
      check.close();
      assert.deepEqual(balances, [1_000_000 - 400, 1_000_000 + 400]);
    } finally {
      await app.stop();
    }
  });
});
