// Per-request cost on real routes: the generated adapter's one connection per request against a
// pool checkout per statement, on PostgreSQL. Two routes: GET /users/42 (one statement) and
// GET /users/42/summary (three: the user, a count, its neighbour); pool smaller than the clients
// (10 for 32) and equal to them (32). Fastify's generated plugin against @fastify/postgres
// (`app.pg.query`), Express's generated middleware against hand-written code: a checkout per
// request (`pool.connect()`, released when the response closes) and `pool.query` per statement.
//
//   node --import tsx bench/http/routes.ts [--rounds 9] [--seconds 2] [--pools 10,32] [--only fastify]
//   BENCH_NODE=/path/to/node24 node --import tsx bench/http/routes.ts   # servers on another Node.js
//
// Unlike run.ts, each server is loaded alone on the server CPU, in rounds that rotate their
// order: throughput and p99 depend on how long a request holds its connection, which servers
// sharing one CPU would blur. The numbers to read are the medians of the per-round ratios
// (server CPU µs per request, requests/s) with distribution-free 95 % intervals.
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generate, prepareDatabase } from '../../test/support/apps.ts';
import { startPostgres } from '../../test/support/postgres.ts';
import {
  benchDir,
  cpuMicros,
  cpuPlan,
  cpuTimes,
  type Framework,
  getUser,
  type Mode,
  machineInfo,
  pin,
  type RunningServer,
  serverNodeVersion,
  startBenchServer,
} from './harness.ts';
import { interval, load, loadInfo, median, medianInterval, percent, pinPostgres } from './load.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '9' },
    seconds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    pools: { type: 'string', default: '10,32' },
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});
const rounds = values.quick ? 1 : Number(values.rounds);
const seconds = values.quick ? 1 : Number(values.seconds);
const connections = Number(values.connections);
const pools = values.pools.split(',').map(Number);

const routes = [
  { name: 'one statement', path: '/users/42' },
  { name: 'three statements', path: '/users/42/summary' },
];

interface Variant {
  label: string;
  mode: Mode;
}
interface Setup {
  framework: Framework;
  /** The generated server first; the ratios are against each of the others. */
  variants: Variant[];
}
const allSetups: Setup[] = [
  {
    framework: 'fastify',
    variants: [
      { label: 'generated', mode: 'generated' },
      { label: '@fastify/postgres', mode: 'fastify-postgres' },
    ],
  },
  {
    framework: 'express',
    variants: [
      { label: 'generated', mode: 'generated' },
      { label: 'checkout per request', mode: 'baseline' },
      { label: 'pool.query per statement', mode: 'pool-query' },
    ],
  },
];
const setups = allSetups.filter((setup) => !values.only || setup.framework === values.only);
if (setups.length === 0) throw new Error(`--only ${values.only}: valid are fastify and express`);

interface Sample {
  requestsPerSecond: number;
  p99: number;
  cpuMicrosPerRequest: number;
  /** How busy the server CPU and the others (wrk, PostgreSQL) were, 0..1. */
  serverCpuBusy: number;
  otherCpusBusy: number;
}

const plan = cpuPlan(cpus().length);
if (plan) pin(process.pid, plan.others);

/** Busy share of the CPUs `filter` picks, between two cpuTimes() readings. */
function busyShare(
  before: ReturnType<typeof cpuTimes>,
  after: ReturnType<typeof cpuTimes>,
  filter: (cpu: number) => boolean,
): number {
  let busy = 0;
  let total = 0;
  for (const [i, now] of after.entries()) {
    if (!filter(now.cpu)) continue;
    busy += now.busy - before[i]!.busy;
    total += now.total - before[i]!.total;
  }
  return total > 0 ? busy / total : Number.NaN;
}

async function measure(server: RunningServer, path: string, duration: number): Promise<Sample> {
  const pid = server.child.pid!;
  const cpu0 = cpuMicros(pid) ?? 0;
  const times0 = cpuTimes();
  const result = await load(`${server.url}${path}`, duration, { connections, cpus: plan?.others });
  const times1 = cpuTimes();
  const serverCpu = plan ? Number(plan.server) : -1;
  return {
    requestsPerSecond: result.requestsPerSecond,
    p99: result.p99,
    cpuMicrosPerRequest: ((cpuMicros(pid) ?? 0) - cpu0) / result.requests,
    serverCpuBusy: busyShare(times0, times1, (cpu) => cpu === serverCpu),
    otherCpusBusy: busyShare(times0, times1, (cpu) => cpu !== serverCpu),
  };
}

interface Row {
  framework: Framework;
  route: string;
  pool: number;
  /** Medians over rounds, per variant label. */
  servers: Record<string, Omit<Sample, 'otherCpusBusy'> & { otherCpusBusy: number }>;
  /** generated / each other variant: medians of per-round ratios, with 95 % intervals. */
  against: Record<
    string,
    {
      throughput: number;
      throughputInterval?: [number, number] | undefined;
      cpu: number;
      cpuInterval?: [number, number] | undefined;
    }
  >;
}

const summarize = (samples: Sample[]) => ({
  requestsPerSecond: Math.round(median(samples.map((s) => s.requestsPerSecond))),
  p99: Number(median(samples.map((s) => s.p99)).toFixed(2)),
  cpuMicrosPerRequest: Number(median(samples.map((s) => s.cpuMicrosPerRequest)).toFixed(1)),
  serverCpuBusy: Number(median(samples.map((s) => s.serverCpuBusy)).toFixed(3)),
  otherCpusBusy: Number(median(samples.map((s) => s.otherCpusBusy)).toFixed(3)),
});

const loadAverageBefore = loadavg();
const postgres = process.env.DATABASE_URL ? undefined : await startPostgres();
const postgresUrl = process.env.DATABASE_URL ?? postgres!.url;
const rows: Row[] = [];
try {
  if (plan) console.log(await pinPostgres(postgresUrl, plan.others));
  await generate('postgres');
  const env = await prepareDatabase('postgres', postgresUrl);
  for (const { framework, variants } of setups) {
    for (const pool of pools) {
      const servers: RunningServer[] = [];
      try {
        for (const variant of variants) {
          const server = await startBenchServer(framework, variant.mode, 'postgres', {
            ...env,
            POOL_MAX: String(pool),
          });
          servers.push(server);
          if (plan) pin(server.child.pid!, plan.server);
          await getUser(server.url, new Agent());
        }
        for (const route of routes) {
          for (const server of servers) await measure(server, route.path, 1); // warm-up
          const samples: Sample[][] = variants.map(() => []);
          for (let round = 0; round < rounds; round++) {
            // Rotate who goes first, so that no server always follows the same one.
            for (let k = 0; k < servers.length; k++) {
              const i = (round + k) % servers.length;
              samples[i]!.push(await measure(servers[i]!, route.path, seconds));
            }
          }
          const row: Row = { framework, route: route.name, pool, servers: {}, against: {} };
          variants.forEach((variant, i) => {
            row.servers[variant.label] = summarize(samples[i]!);
          });
          for (const [i, variant] of variants.entries()) {
            if (i === 0) continue;
            const ratios = (pick: (s: Sample) => number) =>
              samples[0]!.map((s, r) => pick(s) / pick(samples[i]![r]!));
            const throughput = ratios((s) => s.requestsPerSecond);
            const cpu = ratios((s) => s.cpuMicrosPerRequest);
            row.against[variant.label] = {
              throughput: Number(median(throughput).toFixed(3)),
              throughputInterval: medianInterval(throughput),
              cpu: Number(median(cpu).toFixed(3)),
              cpuInterval: medianInterval(cpu),
            };
          }
          rows.push(row);
          console.log(
            `${framework}, ${route.name}, pool ${pool}: ` +
              variants
                .map((v) => {
                  const s = row.servers[v.label]!;
                  return `${v.label} ${s.requestsPerSecond} req/s ${s.cpuMicrosPerRequest} µs p99 ${s.p99} ms`;
                })
                .join('; ') +
              Object.entries(row.against)
                .map(
                  ([label, r]) =>
                    `\n  generated / ${label}: throughput ${percent(r.throughput)}` +
                    `${interval(r.throughputInterval)}, CPU ${percent(r.cpu)}${interval(r.cpuInterval)}`,
                )
                .join(''),
          );
        }
      } finally {
        for (const server of servers) await server.stop();
      }
    }
  }
} finally {
  await postgres?.stop();
}

const machine = {
  ...machineInfo(loadAverageBefore),
  ...loadInfo(plan, { rounds, seconds, connections }),
};
if (!values.quick && !values.only) {
  const resultsDir = join(benchDir, '..', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const major = serverNodeVersion.split('.')[0]!.slice(1);
  writeFileSync(
    join(resultsDir, `http-routes-node${major}.json`),
    `${JSON.stringify({ machine, rows }, null, 2)}\n`,
  );
}

console.log(
  '\n| framework | route | pool | vs | throughput generated/anchor | CPU µs/req generated/anchor | ' +
    'req/s (gen / anchor) | µs/req (gen / anchor) | p99 ms (gen / anchor) |',
);
console.log('|---|---|---:|---|---:|---:|---:|---:|---:|');
for (const row of rows) {
  const generated = row.servers.generated!;
  for (const [label, r] of Object.entries(row.against)) {
    const anchor = row.servers[label]!;
    console.log(
      `| ${row.framework} | ${row.route} | ${row.pool} | ${label} | ` +
        `${percent(r.throughput)}${interval(r.throughputInterval)} | ${percent(r.cpu)}${interval(r.cpuInterval)} | ` +
        `${generated.requestsPerSecond} / ${anchor.requestsPerSecond} | ` +
        `${generated.cpuMicrosPerRequest} / ${anchor.cpuMicrosPerRequest} | ` +
        `${generated.p99} / ${anchor.p99} |`,
    );
  }
}
console.log(
  `\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.date}, ` +
    `load average ${loadAverageBefore[0]!.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}, ` +
    `${machine.pinning}, ${rounds} round(s) of ${seconds} s, ${connections} connections`,
);
