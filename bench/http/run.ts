// HTTP benchmarks: each framework with the generated adapter against the same framework with a
// hand-written baseline doing the same work correctly, Fastify's adapter against @fastify/postgres,
// and the SQLite adapter against one shared better-sqlite3 connection. Same machine, same run,
// alternating A/B rounds with autocannon; medians and the ratio.
//
//   node --import tsx bench/http/run.ts [--rounds 5] [--seconds 3] [--connections 32]
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { DatabaseId } from '../../src/cli/targets.ts';
import { startPostgres } from '../../test/support/postgres.ts';
import { ratioChart } from './chart.ts';
import {
  benchDir,
  type Framework,
  generate,
  type Mode,
  prepareDatabase,
  startServer,
} from './harness.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    only: { type: 'string' },
  },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const connections = Number(values.connections);

interface Comparison {
  name: string;
  framework: Framework;
  database: DatabaseId;
  a: Mode;
  b: Mode;
  bLabel: string;
}

const frameworks: Framework[] = ['express', 'fastify', 'koa', 'hono', 'node-http'];
const comparisons: Comparison[] = [
  ...frameworks.map((framework) => ({
    name: `${framework} (postgres)`,
    framework,
    database: 'postgres' as const,
    a: 'generated' as const,
    b: 'baseline' as const,
    bLabel: 'hand-written checkout/release',
  })),
  {
    name: 'fastify vs @fastify/postgres',
    framework: 'fastify' as const,
    database: 'postgres' as const,
    a: 'generated' as const,
    b: 'fastify-postgres' as const,
    bLabel: '@fastify/postgres',
  },
  ...frameworks.map((framework) => ({
    name: `${framework} (sqlite)`,
    framework,
    database: 'sqlite' as const,
    a: 'generated' as const,
    b: 'baseline' as const,
    bLabel: 'one shared better-sqlite3 connection',
  })),
].filter((c) => !values.only || c.name.includes(values.only));

interface Measured {
  requestsPerSecond: number;
  p50: number;
  p99: number;
}

function autocannon(url: string, duration: number): Measured {
  const bin = join(benchDir, 'node_modules', 'autocannon', 'autocannon.js');
  const out = execFileSync(
    process.execPath,
    [bin, '--json', '-c', String(connections), '-d', String(duration), `${url}/users/42`],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 24 },
  );
  const result = JSON.parse(out);
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${url}: ${result.non2xx} non-2xx responses, ${result.errors} errors`);
  }
  return {
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
  };
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const postgres = process.env.DATABASE_URL ? undefined : await startPostgres();
const postgresUrl = process.env.DATABASE_URL ?? postgres!.url;
const sqlitePath = join(benchDir, '.generated', 'bench.db');
await generate('postgres');
await generate('sqlite');
mkdirSync(join(benchDir, '.generated'), { recursive: true });

const rows: {
  name: string;
  baseline: string;
  generated: Measured;
  other: Measured;
  ratio: number;
}[] = [];
for (const comparison of comparisons) {
  const env = await prepareDatabase(
    comparison.database,
    comparison.database === 'postgres' ? postgresUrl : sqlitePath,
  );
  const a = await startServer(comparison.framework, comparison.a, comparison.database, env);
  const b = await startServer(comparison.framework, comparison.b, comparison.database, env);
  try {
    autocannon(a.url, 1);
    autocannon(b.url, 1);
    const runsA: Measured[] = [];
    const runsB: Measured[] = [];
    for (let round = 0; round < rounds; round++) {
      // Alternate which goes first so drift in the machine's state falls on both equally.
      if (round % 2 === 0) {
        runsA.push(autocannon(a.url, seconds));
        runsB.push(autocannon(b.url, seconds));
      } else {
        runsB.push(autocannon(b.url, seconds));
        runsA.push(autocannon(a.url, seconds));
      }
    }
    const summarize = (runs: Measured[]): Measured => ({
      requestsPerSecond: median(runs.map((r) => r.requestsPerSecond)),
      p50: median(runs.map((r) => r.p50)),
      p99: median(runs.map((r) => r.p99)),
    });
    const generated = summarize(runsA);
    const other = summarize(runsB);
    const ratio = generated.requestsPerSecond / other.requestsPerSecond;
    rows.push({ name: comparison.name, baseline: comparison.bLabel, generated, other, ratio });
    console.log(
      `${comparison.name}: generated ${generated.requestsPerSecond.toFixed(0)} req/s vs ` +
        `${comparison.bLabel} ${other.requestsPerSecond.toFixed(0)} req/s → ${(ratio * 100).toFixed(1)}%`,
    );
  } finally {
    await a.stop();
    await b.stop();
  }
}
await postgres?.stop();

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  node: process.version,
  date: new Date().toISOString().slice(0, 10),
  rounds,
  seconds,
  connections,
};
const resultsDir = join(benchDir, '..', 'results');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(join(resultsDir, 'http.json'), `${JSON.stringify({ machine, rows }, null, 2)}\n`);
writeFileSync(
  join(resultsDir, 'http-ratios.svg'),
  ratioChart(rows.map((row) => ({ label: row.name, ratio: row.ratio }))),
);
console.log(
  '\n| comparison | generated req/s | baseline | baseline req/s | ratio | p99 ms (gen / base) |',
);
console.log('|---|---:|---|---:|---:|---:|');
for (const row of rows) {
  console.log(
    `| ${row.name} | ${row.generated.requestsPerSecond.toFixed(0)} | ${row.baseline} | ` +
      `${row.other.requestsPerSecond.toFixed(0)} | ${(row.ratio * 100).toFixed(1)}% | ` +
      `${row.generated.p99} / ${row.other.p99} |`,
  );
}
console.log(
  `\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.date}`,
);
