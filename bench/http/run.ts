// HTTP benchmarks: each framework with the generated adapter against the same framework with a
// hand-written baseline doing the same work correctly (pg's pool.connect()/release(), mysql2's
// pool.getConnection()/release() per request), Fastify's adapter against @fastify/postgres, and
// the SQLite adapter against one shared better-sqlite3 connection. Every comparison runs three
// servers side by side: the generated one, the baseline, and the baseline with AsyncLocalStorage
// switched on process-wide (ALS=1, see servers/common.mjs), which splits the generated code's cost
// into Node's AsyncLocalStorage cost (baseline+ALS / baseline) and the adapter's own (generated /
// baseline+ALS). Same machine, same run: the three servers are loaded at the same time, sharing
// one CPU, so that the machine's changes of speed hit them alike; medians of per-round ratios.
//
//   node --import tsx bench/http/run.ts [--rounds 7] [--seconds 3] [--connections 32] [--only koa]
//   node --import tsx bench/http/run.ts --quick        # one round of 1 s: a smoke check
//   node --import tsx bench/http/run.ts --checkout eager   # the generated adapters check out on
//                        arrival (default: lazy, at the first statement)
//   BENCH_NODE=/path/to/node24 node --import tsx bench/http/run.ts --only postgres
//                        # the servers on another Node.js; results go to http-node24.json
//   node --import tsx bench/http/run.ts --only mysql   # the MySQL rows alone (MariaDB from
//                        MYSQL_URL, else a throwaway one as the tests start); recorded apart
//                        in http-mysql.json, as any --only subset is
//
// Load generator: wrk when on PATH (much lighter than autocannon, so more of the CPU is left for
// what is measured), else autocannon, one per server. With taskset on PATH and two or more CPUs,
// the servers run on the last CPU and the load generators, PostgreSQL and this script on the
// others. On Linux each server's CPU time (/proc/<pid>/stat) is read around every round: CPU µs
// per request, paired within the round, is the number to read; throughput depends on how the
// scheduler shares the CPU.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { DatabaseId } from '../../src/cli/targets.ts';
import { generate, prepareDatabase } from '../../test/support/apps.ts';
import { findMariadbBinaries, mysqlAdmin, startMariadb } from '../../test/support/mariadb.ts';
import { startPostgres } from '../../test/support/postgres.ts';
import { ratioChart } from './chart.ts';
import {
  benchDir,
  type CpuPlan,
  cpuMicros,
  cpuPlan,
  cpuTimes,
  type Framework,
  generatedDir,
  type Mode,
  machineInfo,
  pin,
  type RunningServer,
  resultsSuffix,
  serverNodeVersion,
  startBenchServer,
} from './harness.ts';
import {
  interval,
  load,
  loadGenerator,
  loadInfo,
  type Measured,
  median,
  medianInterval,
  percent,
  pinPostgres,
} from './load.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    checkout: { type: 'string', default: 'lazy' },
  },
});
if (values.checkout !== 'lazy' && values.checkout !== 'eager') {
  throw new Error(`--checkout ${values.checkout}: valid are lazy and eager`);
}
const rounds = values.quick ? 1 : Number(values.rounds);
const seconds = values.quick ? 1 : Number(values.seconds);
const connections = Number(values.connections);
const warmupSeconds = 1;

// ---------------------------------------------------------------------------------------------
// What is compared

type VariantKey = 'generated' | 'baseline' | 'baseline-als';
interface Variant {
  key: VariantKey;
  mode: Mode;
  /** ALS=1: AsyncLocalStorage switched on process-wide in the server. */
  als: boolean;
}

interface Comparison {
  name: string;
  framework: Framework;
  database: DatabaseId;
  /** SQLite: the generated side on node:sqlite (needs a server Node.js of 22.16 or later). */
  driver?: 'node:sqlite';
  baseline: Mode;
  baselineLabel: string;
}

const frameworks: Framework[] = ['express', 'fastify', 'koa', 'hono', 'node-http'];
const [serverMajor = 0, serverMinor = 0] = serverNodeVersion.slice(1).split('.').map(Number);
const builtInSqlite = serverMajor > 22 || (serverMajor === 22 && serverMinor >= 16);
const comparisons: Comparison[] = [
  ...frameworks.map((framework) => ({
    name: `${framework} (postgres)`,
    framework,
    database: 'postgres' as const,
    baseline: 'baseline' as const,
    baselineLabel: 'hand-written checkout/release',
  })),
  {
    name: 'fastify vs @fastify/postgres',
    framework: 'fastify' as const,
    database: 'postgres' as const,
    baseline: 'fastify-postgres' as const,
    baselineLabel: '@fastify/postgres',
  },
  ...frameworks.map((framework) => ({
    name: `${framework} (sqlite)`,
    framework,
    database: 'sqlite' as const,
    baseline: 'baseline' as const,
    baselineLabel: 'one shared better-sqlite3 connection',
  })),
  // The same with the generated runtime on node:sqlite, where the servers' Node.js has it.
  ...(builtInSqlite
    ? frameworks.map((framework) => ({
        name: `${framework} (node:sqlite)`,
        framework,
        database: 'sqlite' as const,
        driver: 'node:sqlite' as const,
        baseline: 'baseline' as const,
        baselineLabel: 'one shared better-sqlite3 connection',
      }))
    : []),
  // MySQL where a server can be had (MYSQL_URL, or mariadb-server installed).
  ...(process.env.MYSQL_URL || findMariadbBinaries()
    ? frameworks.map((framework) => ({
        name: `${framework} (mysql)`,
        framework,
        database: 'mysql' as const,
        baseline: 'baseline' as const,
        baselineLabel: 'hand-written getConnection()/release()',
      }))
    : []),
].filter((c) => !values.only || c.name.includes(values.only));
if (comparisons.length === 0) throw new Error(`--only ${values.only}: no comparison matches`);

const variantsOf = (comparison: Comparison): Variant[] => [
  { key: 'generated', mode: 'generated', als: false },
  { key: 'baseline', mode: comparison.baseline, als: false },
  { key: 'baseline-als', mode: comparison.baseline, als: true },
];

// ---------------------------------------------------------------------------------------------
// The machine: pinning and the load generator

let plan: CpuPlan | undefined = cpuPlan(cpus().length);
const pinned: string[] = [];
if (plan) {
  try {
    // This script first: what it starts (PostgreSQL, the load generator) inherits its CPUs.
    pin(process.pid, plan.others);
    pinned.push(`this script (pid ${process.pid}) → CPU ${plan.others}`);
  } catch (error) {
    console.log(`pinning: off (taskset failed: ${(error as Error).message.split('\n')[0]})`);
    plan = undefined;
  }
} else {
  console.log('pinning: off (needs taskset on PATH and at least 2 CPUs)');
}
const proc = existsSync('/proc/self/stat');
if (!proc) console.log('server CPU per request: not measured (no /proc)');

/** mariadbd, every thread (new ones inherit it), onto the other CPUs. */
async function pinMariadb(url: string, cpuList: string): Promise<string> {
  const pidFile = await mysqlAdmin(url, async (conn) => {
    const [rows] = await conn.query('SELECT @@pid_file AS file');
    return (rows as { file: string }[])[0]!.file;
  });
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  pin(pid, cpuList);
  return `MariaDB (mariadbd ${pid}, all its threads) → CPU ${cpuList}`;
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));
const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)}`;

// ---------------------------------------------------------------------------------------------
// The run

interface RoundResult extends Measured {
  /** Server CPU time (user + system) per request in µs. */
  cpuMicrosPerRequest?: number;
  /** How busy the server's CPU was during the round, 0..1 (pinned runs only). */
  serverCpuBusy?: number;
  /** How busy the other CPUs were (load generator, PostgreSQL), 0..1 (pinned runs only). */
  otherCpusBusy?: number;
}

interface Summary {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  cpuMicrosPerRequest?: number;
  serverCpuBusy?: number;
  otherCpusBusy?: number;
}

interface Row {
  name: string;
  baselineLabel: string;
  generated: Summary;
  baseline: Summary;
  baselineAls: Summary;
  /** Medians of the per-round paired ratios of req/s. */
  ratio: number;
  ratioAls: number;
  /** Median of the per-round ratios of server CPU µs per request, generated / baseline. */
  cpuRatio?: number;
  cpuRatioInterval?: [number, number];
  /** 95% confidence intervals of those medians (see medianInterval). */
  ratioInterval?: [number, number];
  ratioAlsInterval?: [number, number];
  alsOverBaseline: number;
  /** Server CPU µs per request: Node's AsyncLocalStorage cost and the adapter's own. */
  cpuSplit?: { als: number; adapter: number };
  rounds: Record<VariantKey, RoundResult>[];
}

/**
 * Loads every server of a comparison at the same time, one load generator each. They share the
 * server CPU, so a change in the machine's speed (this VM's moves by 2× from second to second)
 * hits all of them alike, and their CPU time per request can be compared round by round.
 */
async function measureTogether(servers: RunningServer[], duration: number): Promise<RoundResult[]> {
  const pids = servers.map((server) => server.child.pid!);
  const cpu0 = pids.map((pid) => (proc ? cpuMicros(pid) : undefined));
  const times0 = cpuTimes();
  const measured = await Promise.all(
    servers.map((server) =>
      load(`${server.url}/users/42`, duration, { connections, cpus: plan?.others }),
    ),
  );
  const cpu1 = pids.map((pid) => (proc ? cpuMicros(pid) : undefined));
  const times1 = cpuTimes();
  const busy = (filter: (cpu: number) => boolean) => {
    let busyDelta = 0;
    let totalDelta = 0;
    for (const [i, after] of times1.entries()) {
      const before = times0[i]!;
      if (!filter(after.cpu)) continue;
      busyDelta += after.busy - before.busy;
      totalDelta += after.total - before.total;
    }
    return totalDelta > 0 ? round(busyDelta / totalDelta, 3) : Number.NaN;
  };
  return measured.map((result, i): RoundResult => {
    const before = cpu0[i];
    const after = cpu1[i];
    return {
      ...result,
      ...(before !== undefined &&
        after !== undefined && {
          cpuMicrosPerRequest: round((after - before) / result.requests, 1),
        }),
      ...(plan && {
        serverCpuBusy: busy((cpu) => cpu === Number(plan!.server)),
        otherCpusBusy: busy((cpu) => cpu !== Number(plan!.server)),
      }),
    };
  });
}

const postgres = process.env.DATABASE_URL ? undefined : await startPostgres();
const postgresUrl = process.env.DATABASE_URL ?? postgres!.url;
const needsMysql = comparisons.some((c) => c.database === 'mysql');
const mariadb = needsMysql && !process.env.MYSQL_URL ? await startMariadb() : undefined;
/** A database of the benchmark's own on the MySQL server. */
const mysqlUrl = await (async () => {
  const server = process.env.MYSQL_URL ?? mariadb?.url;
  if (!needsMysql || server === undefined) return '';
  await mysqlAdmin(server, (conn) => conn.query('CREATE DATABASE IF NOT EXISTS cdh_bench'));
  const url = new URL(server);
  url.pathname = '/cdh_bench';
  return url.toString();
})();
const rows: Row[] = [];
const loadAverageBefore = loadavg();
try {
  if (plan) {
    pinned.push(
      postgres
        ? await pinPostgres(postgresUrl, plan.others)
        : 'postgres: not pinned (DATABASE_URL given: not ours)',
    );
    if (needsMysql) {
      pinned.push(
        mariadb
          ? await pinMariadb(mariadb.url, plan.others)
          : 'MariaDB: not pinned (MYSQL_URL given: not ours)',
      );
    }
    pinned.push(`load generator (${loadGenerator}) → CPU ${plan.others}`);
    pinned.push(`each server → CPU ${plan.server}, alone`);
    console.log(`pinning:\n  ${pinned.join('\n  ')}`);
  }
  const sqlitePath = join(generatedDir, 'bench.db');
  await generate('postgres');
  await generate('sqlite');
  if (needsMysql) await generate('mysql');
  mkdirSync(generatedDir, { recursive: true });

  const estimate =
    comparisons.length * 3 * (rounds * (seconds + 0.2) + warmupSeconds + 1) + comparisons.length;
  console.log(
    `${comparisons.length} comparison(s) × 3 servers × ${rounds} round(s) of ${seconds} s, ` +
      `${connections} connections, ${loadGenerator}: about ${Math.ceil(estimate / 60)} min\n`,
  );

  for (const comparison of comparisons) {
    const locations = { postgres: postgresUrl, mysql: mysqlUrl, sqlite: sqlitePath };
    const env = await prepareDatabase(comparison.database, locations[comparison.database]);
    const variants = variantsOf(comparison);
    const servers: RunningServer[] = [];
    try {
      for (const variant of variants) {
        const server = await startBenchServer(
          comparison.framework,
          variant.mode,
          comparison.database,
          {
            ...env,
            ALS: variant.als ? '1' : '0',
            CHECKOUT: values.checkout,
            ...(comparison.driver && { SQLITE_DRIVER: comparison.driver }),
          },
        );
        servers.push(server);
        if (plan) pin(server.child.pid!, plan.server);
      }
      await measureTogether(servers, warmupSeconds);
      const results: Record<VariantKey, RoundResult>[] = [];
      for (let round = 0; round < rounds; round++) {
        const measured = await measureTogether(servers, seconds);
        const result = Object.fromEntries(
          variants.map((variant, i) => [variant.key, measured[i]!]),
        ) as Record<VariantKey, RoundResult>;
        results.push(result);
        const cpuText = (r: RoundResult) =>
          r.cpuMicrosPerRequest === undefined ? '' : ` ${r.cpuMicrosPerRequest.toFixed(0)} µs`;
        const busyText = (r: RoundResult) =>
          r.serverCpuBusy === undefined
            ? ''
            : ` (server CPU ${(r.serverCpuBusy * 100).toFixed(0)}%, others ${((r.otherCpusBusy ?? 0) * 100).toFixed(0)}%)`;
        console.log(
          `  round ${round + 1}: ${variants
            .map((_, i) => {
              const r = result[variants[i]!.key];
              return `${variants[i]!.key} ${r.requestsPerSecond.toFixed(0)} req/s${cpuText(r)}${busyText(r)}`;
            })
            .join(', ')}`,
        );
      }
      const summarize = (key: VariantKey): Summary => {
        const runs = results.map((r) => r[key]);
        const optional = (pick: (r: RoundResult) => number | undefined) => {
          const xs = runs.map(pick).filter((x): x is number => x !== undefined);
          return xs.length ? median(xs) : undefined;
        };
        return {
          requestsPerSecond: median(runs.map((r) => r.requestsPerSecond)),
          p50: median(runs.map((r) => r.p50)),
          p99: median(runs.map((r) => r.p99)),
          cpuMicrosPerRequest: optional((r) => r.cpuMicrosPerRequest),
          serverCpuBusy: optional((r) => r.serverCpuBusy),
          otherCpusBusy: optional((r) => r.otherCpusBusy),
        };
      };
      const pairs = (a: VariantKey, b: VariantKey) =>
        results.map((r) => r[a].requestsPerSecond / r[b].requestsPerSecond);
      const cpuPairs = results
        .filter((r) => r.generated.cpuMicrosPerRequest && r.baseline.cpuMicrosPerRequest)
        .map((r) => r.generated.cpuMicrosPerRequest! / r.baseline.cpuMicrosPerRequest!);
      const paired = (a: VariantKey, b: VariantKey) => median(pairs(a, b));
      const generated = summarize('generated');
      const baselineResult = summarize('baseline');
      const baselineAls = summarize('baseline-als');
      const row: Row = {
        name: comparison.name,
        baselineLabel: comparison.baselineLabel,
        generated,
        baseline: baselineResult,
        baselineAls,
        ratio: paired('generated', 'baseline'),
        ratioAls: paired('generated', 'baseline-als'),
        alsOverBaseline: paired('baseline-als', 'baseline'),
        ratioInterval: medianInterval(pairs('generated', 'baseline')),
        ratioAlsInterval: medianInterval(pairs('generated', 'baseline-als')),
        ...(cpuPairs.length > 0 && {
          cpuRatio: median(cpuPairs),
          cpuRatioInterval: medianInterval(cpuPairs),
        }),
        rounds: results,
      };
      if (
        generated.cpuMicrosPerRequest !== undefined &&
        baselineResult.cpuMicrosPerRequest !== undefined &&
        baselineAls.cpuMicrosPerRequest !== undefined
      ) {
        row.cpuSplit = {
          als: baselineAls.cpuMicrosPerRequest - baselineResult.cpuMicrosPerRequest,
          adapter: generated.cpuMicrosPerRequest - baselineAls.cpuMicrosPerRequest,
        };
      }
      rows.push(row);
      console.log(
        `${comparison.name}: generated ${generated.requestsPerSecond.toFixed(0)} req/s, ` +
          `${comparison.baselineLabel} ${baselineResult.requestsPerSecond.toFixed(0)}, ` +
          `+ALS ${baselineAls.requestsPerSecond.toFixed(0)} → ${percent(row.ratio)}` +
          `${interval(row.ratioInterval)} of baseline, ${percent(row.ratioAls)}` +
          `${interval(row.ratioAlsInterval)} of baseline+ALS` +
          (row.cpuSplit
            ? `; server CPU per request: AsyncLocalStorage ${signed(row.cpuSplit.als)} µs, ` +
              `adapter ${signed(row.cpuSplit.adapter)} µs`
            : '') +
          (row.cpuRatio === undefined
            ? ''
            : `; CPU per request generated/baseline ${percent(row.cpuRatio)}${interval(row.cpuRatioInterval)}`) +
          '\n',
      );
    } finally {
      for (const server of servers) await server.stop();
    }
  }
} finally {
  await postgres?.stop();
  await mariadb?.stop();
}

const machine = {
  ...machineInfo(loadAverageBefore),
  ...loadInfo(plan, { rounds, seconds, connections }),
  checkout: values.checkout,
};
// The recorded results (bench/README.md, the chart) come from full runs; an --only subset goes
// to a file of its own (http-mysql.json for --only mysql), never over the full run's, and a
// --quick smoke check is not recorded.
const resultsDir = join(benchDir, '..', 'results');
if (!values.quick && values.only && values.checkout === 'lazy') {
  mkdirSync(resultsDir, { recursive: true });
  const subset = values.only.replace(/[^a-z0-9]+/gi, '-');
  writeFileSync(
    join(resultsDir, `http-${subset}${resultsSuffix}.json`),
    `${JSON.stringify({ machine, only: values.only, rows }, null, 2)}\n`,
  );
}
if (!values.quick && !values.only && values.checkout === 'lazy') {
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(
    join(resultsDir, `http${resultsSuffix}.json`),
    `${JSON.stringify({ machine, rows }, null, 2)}\n`,
  );
  writeFileSync(
    join(resultsDir, `http-ratios${resultsSuffix}.svg`),
    ratioChart(
      rows.map((row) => ({
        label: row.name,
        ratio: row.ratio,
        alsRatio: row.ratioAls,
        interval: row.ratioInterval,
      })),
    ),
  );
}

const rps = (s: Summary) => s.requestsPerSecond.toFixed(0);
const micros = (s: Summary) => s.cpuMicrosPerRequest?.toFixed(0) ?? '–';
const millis = (x: number) => (x >= 10 ? x.toFixed(0) : x.toFixed(1));
console.log(
  '\n| comparison | server CPU µs/req (gen / base / base+ALS) | CPU generated/baseline | ' +
    'generated req/s | baseline req/s | baseline+ALS req/s | generated/baseline | ' +
    'generated/baseline+ALS | p99 ms (gen / base / base+ALS) |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const row of rows) {
  console.log(
    `| ${row.name} | ${micros(row.generated)} / ${micros(row.baseline)} / ${micros(row.baselineAls)} | ` +
      `${row.cpuRatio === undefined ? '–' : `${percent(row.cpuRatio)}${interval(row.cpuRatioInterval)}`} | ` +
      `${rps(row.generated)} | ${rps(row.baseline)} | ${rps(row.baselineAls)} | ` +
      `${percent(row.ratio)}${interval(row.ratioInterval)} | ${percent(row.ratioAls)}${interval(row.ratioAlsInterval)} | ` +
      `${millis(row.generated.p99)} / ${millis(row.baseline.p99)} / ${millis(row.baselineAls.p99)} |`,
  );
}
const load1 = (xs: number[]) => xs[0]!.toFixed(2);
console.log(
  `\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.date}, ` +
    `load average ${load1(machine.loadAverage.before)} → ${load1(machine.loadAverage.after)}, ` +
    `pinning ${plan ? 'on' : 'off'} (${machine.pinning}), ${loadGenerator}, ` +
    `${rounds} round(s) of ${seconds} s, ${connections} connections, ${values.checkout} checkout`,
);
