// Scale-out: the generated app as several processes (node:cluster) behind a real PgBouncer in
// transaction pooling mode, under load. Results stay correct (every transfer is whole), nothing
// leaks, and PostgreSQL sees no more connections than PgBouncer's pool.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { clusterStats, generate, prepareDatabase, startServer } from '../support/apps.ts';
import { cleanup } from '../support/cleanup.ts';
import { pgbouncerPath, startPgBouncer } from '../support/pgbouncer.ts';
import { createTestDatabase } from '../support/postgres.ts';

const processes = 3;
const poolMaxPerProcess = 5;
const bouncerPoolSize = 4;

test(`${processes} processes × pool ${poolMaxPerProcess} through PgBouncer (pool ${bouncerPoolSize}, transaction mode)`, {
  skip: pgbouncerPath() ? false : 'pgbouncer is not installed (Debian: apt-get install pgbouncer)',
}, async (t) => {
  const defer = cleanup(t);
  const database = await createTestDatabase();
  defer(() => database.drop());
  const bouncer = await startPgBouncer(database.url, { poolSize: bouncerPoolSize });
  defer(() => bouncer.stop());
  await generate('postgres');
  await prepareDatabase('postgres', database.url);
  const app = await startServer(
    'express',
    'generated',
    'postgres',
    {
      DATABASE_URL: bouncer.url,
      PGBOUNCER: 'true',
      POOL_MAX: String(poolMaxPerProcess),
    },
    { workers: processes },
  );
  defer(() => app.stop());
  const monitor = new pg.Client({ connectionString: database.url });
  await monitor.connect();
  defer(() => monitor.end());
  const dbName = new URL(database.url).pathname.slice(1);
  const serverConnections = async () => {
    const { rows } = await monitor.query<{ total: number; idle_in_tx: number }>(
      `SELECT count(*)::int AS total,
                count(*) FILTER (WHERE state LIKE 'idle in transaction%')::int AS idle_in_tx
           FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
      [dbName],
    );
    return rows[0]!;
  };
  let transfers = 0;
  let reads = 0;
  const failures: string[] = [];
  let maxServerConnections = 0;
  // At least 4 s of load, longer on a slow or busy machine until there was enough to judge by
  // (50 transfers and 100 reads), but never more than 30 s.
  const started = Date.now();
  const loading = () =>
    Date.now() - started < 30_000 &&
    (Date.now() - started < 4000 || transfers <= 50 || reads <= 100);
  const sampler = (async () => {
    while (loading()) {
      maxServerConnections = Math.max(maxServerConnections, (await serverConnections()).total);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  const workers = Array.from({ length: 24 }, async (_, worker) => {
    for (let i = 0; loading(); i++) {
      const transfer = (worker + i) % 3 === 0;
      const res = await fetch(
        transfer ? `${app.url}/transfer` : `${app.url}/users/${1 + ((worker * 37 + i) % 1000)}`,
        { method: transfer ? 'POST' : 'GET', signal: AbortSignal.timeout(10_000) },
      );
      const body = (await res.json()) as { id?: number; ok?: boolean; error?: string };
      if (res.status !== 200) failures.push(`${res.status} ${body.error}`);
      else if (transfer) transfers++;
      else reads++;
    }
  });
  await Promise.all([sampler, ...workers]);

  assert.deepEqual(failures.slice(0, 5), []);
  assert.ok(
    transfers > 50 && reads > 100,
    `too little load: ${transfers} transfers, ${reads} reads`,
  );
  const { rows } = await monitor.query<{ id: number; balance: number }>(
    'SELECT id, balance FROM accounts ORDER BY id',
  );
  assert.deepEqual(
    rows.map((row) => row.balance),
    [1_000_000 - transfers, 1_000_000 + transfers],
    'a transfer was applied partly or lost',
  );
  const stats = await clusterStats(app);
  assert.equal(stats.length, processes);
  assert.deepEqual(
    stats.map((worker) => worker.pool.inUse),
    Array(processes).fill(0),
  );
  const after = await serverConnections();
  assert.equal(after.idle_in_tx, 0);
  assert.ok(
    maxServerConnections <= bouncerPoolSize,
    `PostgreSQL saw ${maxServerConnections} connections behind a PgBouncer pool of ${bouncerPoolSize}`,
  );
});
