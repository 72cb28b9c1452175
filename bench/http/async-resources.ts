// Async resources per request: how many promises, ticks and timers each server of run.ts's
// comparisons creates to answer one GET /users/42. Unlike throughput, these counts are exact and
// repeat from run to run, and on Node 20 they are what AsyncLocalStorage makes expensive: once
// it is in use, every promise and every other async resource in the process pays its hooks.
//
//   node --import tsx bench/http/async-resources.ts [--only koa] [--requests 1000]
//
// Method. Each server (test/support/servers/<framework>.mjs, unchanged) starts with a preload that
// counts async_hooks init events by type. The script sends --requests warm-up requests, one at a
// time on one keep-alive connection, waits for the server to go idle (its 'close' handlers have
// run), takes a snapshot of the counts over IPC, sends --requests more the same way, waits again,
// and divides the difference by the request count. The preload's hook switches the promise hooks
// on in every server alike, baseline included; it counts, it changes nothing that is counted.
// About 1 min for all comparisons. Writes bench/results/http-async-resources.json.
import { writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { DatabaseId } from '../../src/cli/targets.ts';
import { generate, prepareDatabase } from '../../test/support/apps.ts';
import { startPostgres } from '../../test/support/postgres.ts';
import {
  benchDir,
  type Framework,
  generatedDir,
  getUser,
  type Mode,
  type RunningServer,
  resultsSuffix,
  serverNodeVersion,
  startBenchServer,
} from './harness.ts';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    requests: { type: 'string', default: '1000' },
  },
});
const requests = Number(values.requests);

const frameworks: Framework[] = ['express', 'fastify', 'koa', 'hono', 'node-http'];
interface Comparison {
  name: string;
  framework: Framework;
  database: DatabaseId;
  baseline: Mode;
}
const comparisons: Comparison[] = (['postgres', 'sqlite'] as const)
  .flatMap((database) => [
    ...frameworks.map((framework) => ({
      name: `${framework} (${database})`,
      framework,
      database,
      baseline: 'baseline' as Mode,
    })),
    ...(database === 'postgres'
      ? [
          {
            name: 'fastify vs @fastify/postgres',
            framework: 'fastify' as const,
            database,
            baseline: 'fastify-postgres' as Mode,
          },
        ]
      : []),
  ])
  .filter((c) => !values.only || c.name.includes(values.only));
if (comparisons.length === 0) throw new Error(`--only ${values.only}: no comparison matches`);

// Counts init events by type; answers 'async-resources' over the IPC channel the harness opens.
// The counting itself uses a Map and no promise, so it adds nothing to what it counts.
const preload = `
import { createHook } from 'node:async_hooks';
const counts = new Map();
createHook({ init(id, type) { counts.set(type, (counts.get(type) ?? 0) + 1); } }).enable();
process.on('message', (message) => {
  if (message === 'async-resources') process.send({ asyncResources: Object.fromEntries(counts) });
});`;
process.env.BENCH_NODE_OPTIONS = `--import=data:text/javascript,${encodeURIComponent(preload)}`;

type Counts = Record<string, number>;

function snapshot(server: RunningServer): Promise<Counts> {
  return new Promise((resolve) => {
    const onMessage = (message: { asyncResources?: Counts }) => {
      if (!message?.asyncResources) return;
      server.child.off('message', onMessage);
      resolve(message.asyncResources);
    };
    server.child.on('message', onMessage);
    server.child.send('async-resources');
  });
}

/** Async resources created per request, by type, over `requests` sequential requests. */
async function perRequest(server: RunningServer): Promise<Counts> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < requests; i++) await getUser(server.url, agent);
    await sleep(200);
    const before = await snapshot(server);
    for (let i = 0; i < requests; i++) await getUser(server.url, agent);
    await sleep(200);
    const after = await snapshot(server);
    const result: Counts = {};
    for (const [type, count] of Object.entries(after)) {
      const difference = (count - (before[type] ?? 0)) / requests;
      if (difference > 0) result[type] = Math.round(difference * 100) / 100;
    }
    return result;
  } finally {
    agent.destroy();
  }
}

const total = (counts: Counts) => Object.values(counts).reduce((sum, n) => sum + n, 0);
const shown = (counts: Counts) =>
  `${counts.PROMISE ?? 0} / ${counts.TickObject ?? 0} / ${counts.Timeout ?? 0} / ${total(counts)}`;

const postgres = comparisons.some((c) => c.database === 'postgres')
  ? process.env.DATABASE_URL
    ? undefined
    : await startPostgres()
  : undefined;
const results: { comparison: string; generated: Counts; baseline: Counts }[] = [];
try {
  const environments: Partial<Record<DatabaseId, Record<string, string>>> = {};
  for (const database of new Set(comparisons.map((c) => c.database))) {
    await generate(database);
    environments[database] = await prepareDatabase(
      database,
      database === 'postgres'
        ? (process.env.DATABASE_URL ?? postgres!.url)
        : join(generatedDir, 'async-resources.db'),
    );
  }
  console.log(
    `${requests} requests per server, one at a time; per request: promises / ticks / timers / all`,
  );
  for (const comparison of comparisons) {
    const measured: Counts[] = [];
    for (const mode of ['generated', comparison.baseline] as Mode[]) {
      const server = await startBenchServer(
        comparison.framework,
        mode,
        comparison.database,
        environments[comparison.database]!,
      );
      try {
        measured.push(await perRequest(server));
      } finally {
        await server.stop();
      }
    }
    const [generated, baseline] = measured as [Counts, Counts];
    results.push({ comparison: comparison.name, generated, baseline });
    console.log(
      `${comparison.name.padEnd(30)} generated ${shown(generated).padEnd(22)} baseline ${shown(baseline)}`,
    );
  }
} finally {
  await postgres?.stop();
}

// Recorded only from a run of every comparison (--only leaves the results file alone).
if (!values.only) {
  writeFileSync(
    join(benchDir, '..', 'results', `http-async-resources${resultsSuffix}.json`),
    `${JSON.stringify(
      { date: new Date().toISOString(), node: serverNodeVersion, requests, results },
      null,
      2,
    )}\n`,
  );
}
