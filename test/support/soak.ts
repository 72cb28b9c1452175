// Soak: drive a generated app with a bounded mix of requests (successes, handler errors, client
// aborts mid-handler, transactions with an await inside, 404s) and check afterwards that nothing
// leaked: the pool's inUse is 0, PostgreSQL (pg_stat_activity) and MySQL (PROCESSLIST and
// INNODB_TRX) have no connection idle in transaction and never more connections than the pool's
// max, no request hung, and the heap is flat.
//
// test/load/soak.test.ts runs a few seconds of it per target; the long soak, by hand:
//   npm run soak -- [--seconds 60] [--targets express,koa] [--databases sqlite,postgres,mysql]
//     [--concurrency 32] [--pool-max 10]
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { DatabaseId } from '../../src/cli/targets.ts';
import {
  appsDir,
  type Framework,
  generate,
  prepareDatabase,
  removeSqlite,
  startServer,
} from './apps.ts';
import { createMysqlTestDatabase } from './mariadb.ts';
import { createTestDatabase, startPostgres } from './postgres.ts';

export type RequestKind = 'ok' | 'error' | 'abort' | 'transaction' | 'notFound';

const mix: [RequestKind, number][] = [
  ['ok', 0.7],
  ['error', 0.1],
  ['abort', 0.05],
  ['transaction', 0.1],
  ['notFound', 0.05],
];

export interface SoakOptions {
  framework: Framework;
  database: DatabaseId;
  seconds: number;
  concurrency?: number;
  /** Pool max the app runs with; PostgreSQL may never see more connections than this. */
  poolMax?: number;
}

export interface SoakReport {
  framework: Framework;
  database: DatabaseId;
  requests: number;
  byKind: Record<RequestKind, number>;
  unexpected: string[];
  hung: number;
  leaks: { inUse: number; idleInTransaction: number; maxConnections: number; poolMax: number };
  heap: { firstThirdMB: number; lastThirdMB: number; growth: number };
  slowestMillis: number;
}

interface Sample {
  at: number;
  heapUsed: number;
}

const expectedStatus: Record<Exclude<RequestKind, 'abort'>, number> = {
  ok: 200,
  error: 500,
  transaction: 200,
  notFound: 404,
};

function pick(): RequestKind {
  let roll = Math.random();
  for (const [kind, weight] of mix) {
    roll -= weight;
    if (roll <= 0) return kind;
  }
  return 'ok';
}

const hangMillis = 10_000;

function send(
  agent: Agent,
  base: string,
  kind: RequestKind,
): Promise<{ status?: number; aborted?: boolean; error?: string; millis: number }> {
  const started = performance.now();
  const paths: Record<RequestKind, [string, string]> = {
    ok: ['GET', `/users/${1 + Math.floor(Math.random() * 1000)}`],
    error: ['GET', '/fail'],
    abort: ['GET', '/slow?ms=200'],
    transaction: ['POST', '/transfer'],
    notFound: ['GET', '/no/such/route'],
  };
  const [method, path] = paths[kind];
  return new Promise((resolve) => {
    const req = request(`${base}${path}`, { method, agent, timeout: hangMillis }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, millis: performance.now() - started }));
      res.on('error', () => resolve({ aborted: true, millis: performance.now() - started }));
    });
    req.on('timeout', () => {
      req.destroy();
      resolve({ status: -1, millis: performance.now() - started });
    });
    req.on('error', (error: NodeJS.ErrnoException) =>
      resolve({
        aborted: true,
        error: error.code ?? error.message,
        millis: performance.now() - started,
      }),
    );
    if (kind === 'abort') {
      // Hang up while the handler is between its two queries.
      setTimeout(() => req.destroy(), 20 + Math.random() * 40);
    }
    req.end();
  });
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return (await res.json()) as T;
}

export async function soak(options: SoakOptions): Promise<SoakReport> {
  const { framework, database, seconds } = options;
  const concurrency = options.concurrency ?? 32;
  const poolMax = options.poolMax ?? 10;
  // Everything started is stopped in the finally below, in reverse order, whatever failed.
  const cleanups: (() => unknown)[] = [];
  try {
    const pgDatabase = database === 'postgres' ? await createTestDatabase() : undefined;
    if (pgDatabase) cleanups.push(() => pgDatabase.drop());
    const mysqlDatabase = database === 'mysql' ? await createMysqlTestDatabase() : undefined;
    if (mysqlDatabase) cleanups.push(() => mysqlDatabase.drop());
    const location =
      pgDatabase?.url ?? mysqlDatabase?.url ?? join(appsDir, `soak-${framework}-${process.pid}.db`);
    if (database === 'sqlite') cleanups.push(() => removeSqlite(location));
    const env = await prepareDatabase(database, location);
    const server = await startServer(framework, 'generated', database, {
      ...env,
      POOL_MAX: String(poolMax),
      DB_POOL_MAX: String(poolMax),
    });
    cleanups.push(() => server.stop());
    const monitor = pgDatabase ? new pg.Client({ connectionString: pgDatabase.url }) : undefined;
    if (monitor) {
      await monitor.connect();
      cleanups.push(() => monitor.end());
    }
    const mysqlMonitor = mysqlDatabase
      ? await mysql.createConnection({ uri: mysqlDatabase.url })
      : undefined;
    if (mysqlMonitor) cleanups.push(() => mysqlMonitor.end());
    const dbName = pgDatabase ? new URL(pgDatabase.url).pathname.slice(1) : '';
    const connectionsNow = async (): Promise<{ total: number; idleInTransaction: number }> => {
      if (mysqlMonitor) {
        // The app's sessions per PROCESSLIST, and those of them that InnoDB sees in a
        // transaction while idle (a statement running is a request in flight, not a leak).
        const [rows] = await mysqlMonitor.query(
          `SELECT count(*) AS total,
                  count(CASE WHEN p.COMMAND = 'Sleep' THEN t.trx_id END) AS idleInTransaction
             FROM information_schema.PROCESSLIST p
             LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
            WHERE p.DB = DATABASE() AND p.ID <> CONNECTION_ID()`,
        );
        const [row] = rows as { total: number | string; idleInTransaction: number | string }[];
        return { total: Number(row!.total), idleInTransaction: Number(row!.idleInTransaction) };
      }
      if (!monitor) {
        // SQLite: the server counts the connections its pool opened and has not closed, and
        // those with a transaction open; counted between requests, none may be.
        const { sqlite } = await getJson<{ sqlite: { open: number; inTransaction: number } }>(
          `${server.url}/__stats`,
        );
        return { total: sqlite.open, idleInTransaction: sqlite.inTransaction };
      }
      const { rows } = await monitor.query<{ total: number; idle_in_tx: number }>(
        `SELECT count(*)::int AS total,
                count(*) FILTER (WHERE state LIKE 'idle in transaction%')::int AS idle_in_tx
           FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid()
            -- Not autovacuum's workers: the transfers' updates bring them to this database too.
            AND backend_type = 'client backend'`,
        [dbName],
      );
      return { total: rows[0]!.total, idleInTransaction: rows[0]!.idle_in_tx };
    };
    return await drive(
      { framework, database, seconds, concurrency, poolMax },
      server.url,
      connectionsNow,
    );
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}

/** The load itself, then the leak checks, against a server that is up. */
async function drive(
  options: Required<SoakOptions>,
  url: string,
  connectionsNow: () => Promise<{ total: number; idleInTransaction: number }>,
): Promise<SoakReport> {
  const { framework, database, seconds, concurrency, poolMax } = options;
  const server = { url };
  const report: SoakReport = {
    framework,
    database,
    requests: 0,
    byKind: { ok: 0, error: 0, abort: 0, transaction: 0, notFound: 0 },
    unexpected: [],
    hung: 0,
    leaks: { inUse: 0, idleInTransaction: 0, maxConnections: 0, poolMax },
    heap: { firstThirdMB: 0, lastThirdMB: 0, growth: 0 },
    slowestMillis: 0,
  };
  const samples: Sample[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const deadline = Date.now() + seconds * 1000;
  const started = Date.now();

  // The first second warms the process up (JIT, caches, pool growth); memory is sampled after it.
  const warmUntil = started + Math.min(1000, (seconds * 1000) / 4);
  const sampler = (async () => {
    while (Date.now() < deadline) {
      if (Date.now() < warmUntil) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      const stats = await getJson<{ memory: { heapUsed: number } }>(`${server.url}/__stats`);
      samples.push({ at: Date.now() - started, heapUsed: stats.memory.heapUsed });
      const { total } = await connectionsNow();
      report.leaks.maxConnections = Math.max(report.leaks.maxConnections, total);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();

  const worker = async () => {
    while (Date.now() < deadline) {
      const kind = pick();
      const result = await send(agent, server.url, kind);
      report.requests++;
      report.byKind[kind]++;
      report.slowestMillis = Math.max(report.slowestMillis, result.millis);
      if (result.status === -1) report.hung++;
      else if (kind !== 'abort' && result.status !== expectedStatus[kind]) {
        if (report.unexpected.length < 20) {
          report.unexpected.push(`${kind}: ${result.aborted ? result.error : result.status}`);
        }
      }
    }
  };
  await Promise.all([sampler, ...Array.from({ length: concurrency }, worker)]);
  agent.destroy();

  // Releases after aborts finish asynchronously; give them a moment, then check for leaks.
  const settleBy = Date.now() + 15_000;
  for (;;) {
    const stats = await getJson<{ pool: { inUse: number } }>(`${server.url}/__stats`);
    const pgNow = await connectionsNow();
    report.leaks.inUse = stats.pool.inUse;
    report.leaks.idleInTransaction = pgNow.idleInTransaction;
    if ((stats.pool.inUse === 0 && pgNow.idleInTransaction === 0) || Date.now() > settleBy) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const third = Math.max(1, Math.floor(samples.length / 3));
  const mean = (xs: Sample[]) => xs.reduce((sum, s) => sum + s.heapUsed, 0) / xs.length / 2 ** 20;
  report.heap.firstThirdMB = mean(samples.slice(0, third));
  report.heap.lastThirdMB = mean(samples.slice(-third));
  report.heap.growth = report.heap.lastThirdMB / report.heap.firstThirdMB - 1;

  return report;
}

export function formatReport(r: SoakReport): string {
  const kinds = Object.entries(r.byKind)
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  const leaks = r.leaks.inUse + r.leaks.idleInTransaction + r.hung + r.unexpected.length;
  return (
    `${r.framework}/${r.database}: ${r.requests} requests (${kinds}); ` +
    `inUse ${r.leaks.inUse}, idle in tx ${r.leaks.idleInTransaction}, ` +
    `max connections ${r.leaks.maxConnections}/${r.leaks.poolMax}, hung ${r.hung}, ` +
    `unexpected ${r.unexpected.length}, heap ${r.heap.firstThirdMB.toFixed(1)} → ` +
    `${r.heap.lastThirdMB.toFixed(1)} MB, slowest ${r.slowestMillis.toFixed(0)} ms; leaks found ${leaks}`
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // A server of its own unless DATABASE_URL is set, stopped on exit (see postgres.ts).
  if (!process.env.DATABASE_URL) process.env.DATABASE_URL = (await startPostgres()).url;
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '30' },
      targets: { type: 'string', default: 'express,fastify,koa,hono,node-http,fetch,hooks' },
      databases: { type: 'string', default: 'sqlite,postgres' },
      concurrency: { type: 'string', default: '32' },
      'pool-max': { type: 'string', default: '10' },
    },
  });
  for (const database of values.databases.split(',') as DatabaseId[]) {
    await generate(database);
    for (const framework of values.targets.split(',') as Framework[]) {
      const report = await soak({
        framework,
        database,
        seconds: Number(values.seconds),
        concurrency: Number(values.concurrency),
        poolMax: Number(values['pool-max']),
      });
      console.log(formatReport(report));
      if (report.unexpected.length > 0)
        console.log(`  unexpected: ${report.unexpected.join('; ')}`);
    }
  }
  process.exit(0);
}
