// SQLite readers while writers queue: GET /users/42 on the generated Express + SQLite server
// (default pool of 10) alone, and with 20 clients sending write transactions (POST /transfer:
// two UPDATEs with a 1 ms await between them, inside db.atomic()) without pause. Writers take
// turns at SQLite's one write lock; the readers' throughput shows whether those waiting for it
// hold connections the readers need. Rounds alternate alone / with writers; medians.
//
//   node --import tsx bench/http/sqlite-writers.ts [--rounds 6] [--seconds 3] [--writers 20] [--quick]
//
// The server runs alone on the last CPU when taskset is there; autocannon and the writers run
// in this process on the others. Results: bench/results/http-sqlite-writers.json.
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { generate, prepareDatabase } from '../../test/support/apps.ts';
import {
  benchDir,
  cpuPlan,
  generatedDir,
  machineInfo,
  pin,
  resultsSuffix,
  startBenchServer,
} from './harness.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '3' },
    writers: { type: 'string', default: '20' },
    quick: { type: 'boolean', default: false },
  },
});
const rounds = values.quick ? 1 : Number(values.rounds);
const seconds = values.quick ? 1 : Number(values.seconds);
const writerCount = Number(values.writers);

const run = promisify(execFile);
const autocannon = createRequire(import.meta.url).resolve('autocannon');

interface Round {
  writers: number;
  readsPerSecond: number;
  readP99: number;
  writesPerSecond: number;
}

/** POST /transfer in a loop until `stop` is set; counts the answers, which must be 200. */
async function writeLoop(url: string, agent: Agent, stop: { now: boolean }): Promise<number> {
  let done = 0;
  while (!stop.now) {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${url}/transfer`, { method: 'POST', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
    if (status !== 200) throw new Error(`POST /transfer answered ${status}`);
    done++;
  }
  return done;
}

async function measure(url: string, writers: number): Promise<Round> {
  const agent = new Agent({ keepAlive: true, maxSockets: writers });
  const stop = { now: false };
  const loops = Array.from({ length: writers }, () => writeLoop(url, agent, stop));
  // A process of its own, so that the writers' loop in this one does not slow the readers' client.
  const { stdout } = await run(
    process.execPath,
    [autocannon, '--json', '-c', '32', '-d', String(seconds), `${url}/users/42`],
    { maxBuffer: 1 << 24 },
  );
  const reads = JSON.parse(stdout);
  stop.now = true;
  const writes = (await Promise.all(loops)).reduce((sum, n) => sum + n, 0);
  agent.destroy();
  if (reads.non2xx > 0 || reads.errors > 0) {
    throw new Error(`readers: ${reads.non2xx} non-2xx answers, ${reads.errors} errors`);
  }
  return {
    writers,
    readsPerSecond: reads.requests.average,
    readP99: reads.latency.p99,
    writesPerSecond: writes / seconds,
  };
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const loadBefore = loadavg();
const plan = cpuPlan(cpus().length);
if (plan) pin(process.pid, plan.others);
await generate('sqlite');
const env = await prepareDatabase('sqlite', join(generatedDir, 'writers.db'));
const server = await startBenchServer('express', 'generated', 'sqlite', env);
if (plan) pin(server.child.pid!, plan.server);
const results: Round[] = [];
try {
  await measure(server.url, writerCount); // warm-up, both paths
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [0, writerCount] : [writerCount, 0];
    for (const writers of order) {
      const result = await measure(server.url, writers);
      results.push(result);
      console.log(
        `round ${round + 1}, ${writers} writers: ${result.readsPerSecond.toFixed(0)} reads/s ` +
          `(p99 ${result.readP99} ms), ${result.writesPerSecond.toFixed(0)} writes/s`,
      );
    }
  }
} finally {
  await server.stop();
}

const summary = (writers: number) => {
  const runs = results.filter((r) => r.writers === writers);
  return {
    writers,
    readsPerSecond: Math.round(median(runs.map((r) => r.readsPerSecond))),
    readP99: median(runs.map((r) => r.readP99)),
    writesPerSecond: Math.round(median(runs.map((r) => r.writesPerSecond))),
  };
};
const alone = summary(0);
const withWriters = summary(writerCount);
const kept = withWriters.readsPerSecond / alone.readsPerSecond;
const machine = { ...machineInfo(loadBefore), rounds, seconds, poolMax: 10 };
// A --quick smoke check leaves the recorded results as they are.
if (!values.quick) {
  mkdirSync(join(benchDir, '..', 'results'), { recursive: true });
  writeFileSync(
    join(benchDir, '..', 'results', `http-sqlite-writers${resultsSuffix}.json`),
    `${JSON.stringify({ machine, alone, withWriters, kept, results }, null, 2)}\n`,
  );
}
console.log(
  `\n| writers | reads/s | read p99 ms | writes/s |\n|---:|---:|---:|---:|\n` +
    [alone, withWriters]
      .map((s) => `| ${s.writers} | ${s.readsPerSecond} | ${s.readP99} | ${s.writesPerSecond} |`)
      .join('\n') +
    `\n\nreaders keep ${(kept * 100).toFixed(0)}% of their throughput with ${writerCount} writers; ` +
    `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, load ${loadBefore[0]!.toFixed(2)}`,
);
