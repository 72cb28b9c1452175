// Instructions per request: the HTTP comparisons of run.ts (generated / hand-written baseline /
// baseline with AsyncLocalStorage on, ALS=1), counted with valgrind's callgrind instead of timed.
// Throughput and even CPU µs per request move by ±20% from run to run on a shared VM; the number
// of user-space instructions the server executes for a fixed batch of requests repeats within
// about 0.3%, so a difference of a few percent can be resolved.
//
//   node --import tsx bench/http/instructions.ts [--only fastify,koa] [--database sqlite|postgres|all]
//        [--requests 2000] [--repeats 3] [--warmup-blocks 8] [--tolerance 0.5] [--max-blocks 10]
//
// Default: fastify, koa, hono and node-http on SQLite, 3–7 min per comparison (three servers),
// 19 min in all on a 2-core VM; Express only with --only express (see below, ~30 min).
// PostgreSQL comparisons (the four, and Fastify against @fastify/postgres) take about 9 min each,
// so they run only when asked: --database postgres (~45 min) or --database all (~65).
//
// Method. Each server (bench/http/servers/<framework>.mjs, unchanged) runs as
// `valgrind --tool=callgrind --instr-atstart=no node --expose-gc … <server>`, instrumentation off
// while it starts and warms up. A *block* is: a full young-generation GC in the server (see the
// preload below), then a fresh keep-alive agent opens `--concurrency` connections, sends exactly
// `--requests` GET /users/42 (every answer checked: 200 and the right user), closes them, and
// waits 0.5 s for the server to go idle. The warm-up is `--warmup-blocks` blocks (16000 requests:
// V8 tiers a function called once per request up to TurboFan only after several thousand calls);
// then each block runs between `vgdb … instrumentation on` and `vgdb … dump`, and the dump's
// total Ir (instructions executed by every thread of the process: the JIT compiler's and the
// garbage collector's included) over the request count is that block's result. Blocks go on until
// the last `--repeats` agree within `--tolerance` % (at most `--max-blocks`); the median of those
// is reported with their spread, (max − min) / min. A late JIT compile shows as one block 1–3%
// high and is left behind by this rule; "not converged" (!) says it was not.
//
// Major GCs: where the old generation grows (seen with pg), a block now and then held a
// mark-compact plus the recompiles after it, +60–80% for that block; the old generation now
// starts at 1 GB (see heapFlags), which keeps them out of the measured blocks on Node 20. Servers
// on Node 24 (BENCH_NODE) still show a high block now and then (later tier-up compiles, it
// seems), so they may not converge (!): read the block list in the JSON, whose lowest blocks
// are the steady state.
//
// Why fresh connections per block: with one set of long-lived connections through the warm-up,
// the first new sockets deoptimize stream code and the JIT needs thousands of requests to settle.
// Why the GC before each block and a fixed young generation: a scavenge costs ~800k instructions
// (~0.5% of a 2000-request block), and V8 sizes the young generation from the allocation rate
// per wall-clock second, which valgrind changes; so the semi-space is fixed at 2 MB and each block
// starts empty, and the scavenge count then depends on what the server allocates, nothing else.
// The GC is triggered through a preload (--import of a data: URL, the same for every server) that
// listens for SIGUSR2 and reports with fs.writeSync: process.stdout, a stream, would share code
// with the sockets and deoptimize it.
//
// What is counted: user-space instructions of the server process only. Not counted: the kernel
// (syscalls, TCP), the client (this script) and PostgreSQL, whose backends are other processes:
// for the postgres rows only the Node side of the work is in the number. Instructions are not
// time (no cache misses, no syscall cost, a pg round trip counts as nothing), but the same code
// path gives the same count, which is what comparing two adapters needs.
//
// The JIT under valgrind: V8's generated code runs translated like all code, so Node's normal
// tiering (Ignition → Sparkplug → TurboFan, no flags changed) happens, and the optimized code is
// what it is without valgrind. What changes is timing: valgrind runs one thread at a time, so
// background compiles finish late (hence the long warm-up), and wall-clock timers (the servers'
// 10 ms event-loop-delay histogram, Node's Date header cache) fire more often per request since
// everything is ~50× slower. They are within the spread.
//
// Writes bench/results/http-instructions.json; callgrind's files, valgrind's log and each
// server's stdout are kept in bench/http/.generated/callgrind/ (callgrind_annotate reads them).
// BENCH_NODE runs the servers on another node (results in http-instructions-node<major>.json).
// BENCH_NODE_OPTIONS adds flags to the servers' node, as in harness.ts: '--trace-opt
// --trace-deopt --trace-gc' shows, between "====" marks, what happened in each block. Needs
// valgrind (callgrind and vgdb) on PATH and bench/http's dependencies (npm ci --prefix
// bench/http). PostgreSQL: DATABASE_URL, or a throwaway cluster as run.ts makes.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { Agent } from 'node:http';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { DatabaseId } from '../../src/cli/targets.ts';
import { freePort, startPostgres } from '../../test/support/postgres.ts';
import {
  benchDir,
  type Framework,
  generate,
  getUser,
  type Mode,
  machineInfo,
  prepareDatabase,
  resultsSuffix,
  serverEnv,
  serverNode,
} from './harness.ts';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    database: { type: 'string' },
    requests: { type: 'string', default: '2000' },
    'warmup-blocks': { type: 'string', default: '8' },
    repeats: { type: 'string', default: '3' },
    'max-blocks': { type: 'string', default: '10' },
    tolerance: { type: 'string', default: '0.5' },
    concurrency: { type: 'string', default: '8' },
  },
});
const requests = Number(values.requests);
const warmupBlocks = Number(values['warmup-blocks']);
const repeats = Number(values.repeats);
const maxBlocks = Math.max(repeats, Number(values['max-blocks']));
const tolerance = Number(values.tolerance) / 100;
const concurrency = Number(values.concurrency);
// Extra flags for the server's node, as in harness.ts (e.g. '--trace-opt --trace-deopt'; the
// server's stdout is kept next to the callgrind files).
const extraNodeFlags = process.env.BENCH_NODE_OPTIONS?.split(' ').filter(Boolean) ?? [];

for (const tool of ['valgrind', 'vgdb']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim() === '') {
    console.error(`${tool} is not on PATH: install valgrind (Debian: apt-get install valgrind).`);
    process.exit(1);
  }
}
const valgrindVersion = execFileSync('valgrind', ['--version'], { encoding: 'utf8' }).trim();

// ---------------------------------------------------------------------------------------------
// What is compared: run.ts's framework comparisons against the hand-written baseline

const frameworks: Framework[] = ['express', 'fastify', 'koa', 'hono', 'node-http'];
const databases: DatabaseId[] =
  values.database === 'all'
    ? ['sqlite', 'postgres']
    : [(values.database ?? 'sqlite') as DatabaseId];
for (const database of databases) {
  if (database !== 'sqlite' && database !== 'postgres') {
    throw new Error(`--database ${database}: sqlite, postgres or all`);
  }
}
interface Comparison {
  name: string;
  framework: Framework;
  database: DatabaseId;
  /** What the baseline servers run: the hand-written baseline, or @fastify/postgres. */
  baseline: Mode;
}
const comparisons: Comparison[] = databases
  .flatMap((database): Comparison[] => [
    ...frameworks.map((framework) => ({
      name: `${framework} (${database})`,
      framework,
      database,
      baseline: 'baseline' as const,
    })),
    ...(database === 'postgres'
      ? [
          {
            name: 'fastify vs @fastify/postgres',
            framework: 'fastify' as const,
            database,
            baseline: 'fastify-postgres' as const,
          },
        ]
      : []),
  ])
  .filter((c) =>
    // Express by name only: most of its instructions are V8 runtime lookups (LoadIC misses,
    // stub-cache fills, map migrations after its per-request setPrototypeOf on req/res), and their
    // count varies ±4% from block to block, so it runs all --max-blocks: ~30 min for three servers.
    values.only
      ? values.only.split(',').some((part) => c.name.includes(part))
      : c.framework !== 'express',
  );
if (comparisons.length === 0) throw new Error(`--only ${values.only}: no comparison matches`);

type VariantKey = 'generated' | 'baseline' | 'baseline-als';
const variants: { key: VariantKey; als: boolean }[] = [
  { key: 'generated', als: false },
  { key: 'baseline', als: false },
  { key: 'baseline-als', als: true },
];

// ---------------------------------------------------------------------------------------------
// A server under callgrind

const outDir = join(benchDir, '.generated', `callgrind${resultsSuffix}`);

// The young generation fixed at 2 MB (where V8 settles these servers under valgrind; left alone it
// drifts between 1 and 2 MB with wall-clock allocation rates) and emptied before every block by a
// minor GC (a full one would throw away optimized code), so each block has the same scavenges.
// The old generation starts at 1 GB, so that what survives the scavenges (pg's buffers and
// AsyncLocalStorage's stores pile up faster than SQLite's) does not set off a mark-compact in
// the middle of a measured block: a major GC and the recompiles after it add 60-80% to a block.
// The preload is the same for every server: SIGUSR2 → gc, then a marker on fd 1 (see the header).
const heapFlags = [
  '--min-semi-space-size=2',
  '--max-semi-space-size=2',
  '--initial-old-space-size=1024',
];
const gcMarker = '__instructions_gc_done__';
const gcPreload = `import { writeSync } from 'node:fs'; process.on('SIGUSR2', () => { globalThis.gc({ type: 'minor' }); writeSync(1, '${gcMarker}\\n'); });`;

interface Server {
  url: string;
  pid: number;
  child: ChildProcess;
  /** callgrind's output file; dump n goes to `${outFile}.${n}`. */
  outFile: string;
  /** The server's stdout, for BENCH_NODE_OPTIONS tracing. */
  stdoutFile: string;
  dumps: number;
  /** A full GC in the server (through the preload below), resolved when it is done. */
  collectGarbage(): Promise<void>;
  stop(): Promise<void>;
}

async function startUnderCallgrind(
  name: string,
  framework: Framework,
  mode: Mode,
  database: DatabaseId,
  env: Record<string, string>,
): Promise<Server> {
  const port = await freePort();
  mkdirSync(outDir, { recursive: true });
  const outFile = join(outDir, name);
  const stdoutFile = `${outFile}.stdout`;
  for (let n = 1; existsSync(`${outFile}.${n}`); n++) rmSync(`${outFile}.${n}`);
  writeFileSync(stdoutFile, '');
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--instr-atstart=no',
      `--callgrind-out-file=${outFile}`,
      `--log-file=${outFile}.log`,
      serverNode,
      '--expose-gc',
      ...heapFlags,
      `--import=data:text/javascript,${encodeURIComponent(gcPreload)}`,
      ...extraNodeFlags,
      join(benchDir, 'servers', `${framework}.mjs`),
    ],
    {
      cwd: benchDir,
      env: serverEnv(framework, mode, database, env, port),
      // No IPC channel: the server says it is ready on stdout ("listening on …").
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  // Lines of the server's stdout, watched for "listening on" and the preload's GC marker.
  const lines = new EventEmitter();
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    appendFileSync(stdoutFile, chunk);
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop()!;
    for (const line of parts) lines.emit('line', line);
  });
  await new Promise<void>((resolve, reject) => {
    // Start-up under valgrind takes 5–30 s (every module's code is translated once).
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 180 s`)), 180_000);
    const onLine = (line: string) => {
      if (!line.startsWith('listening on')) return;
      clearTimeout(timer);
      lines.off('line', onLine);
      resolve();
    };
    lines.on('line', onLine);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}; see ${outFile}.log`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    child,
    outFile,
    stdoutFile,
    dumps: 0,
    async collectGarbage() {
      const done = new Promise<void>((resolve) => {
        const onLine = (line: string) => {
          if (line !== gcMarker) return;
          lines.off('line', onLine);
          resolve();
        };
        lines.on('line', onLine);
      });
      child.kill('SIGUSR2');
      await done;
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A callgrind monitor command ('instrumentation on', 'dump', …) through vgdb. */
function monitor(server: Server, command: string): void {
  execFileSync('vgdb', [`--pid=${server.pid}`, ...command.split(' ')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

function mark(server: Server, text: string): void {
  appendFileSync(server.stdoutFile, `==== ${text}\n`);
}

// ---------------------------------------------------------------------------------------------
// The client: exactly n requests over `concurrency` fresh keep-alive connections

/** Server idle: its close handlers have run (valgrind is slow; this is generous). */
const settleMillis = 500;

async function block(url: string, n: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let sent = 0;
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (sent < n) {
          sent++;
          await getUser(url, agent);
        }
      }),
    );
  } finally {
    agent.destroy();
  }
  await sleep(settleMillis);
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface VariantResult {
  /** Median instructions per request over the last `repeats` blocks. */
  instructionsPerRequest: number;
  /** (max − min) / min over those blocks. */
  spread: number;
  converged: boolean;
  /** Every measured block, in order, instructions per request. */
  blocks: number[];
  startSeconds: number;
  seconds: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const spreadOf = (xs: number[]) => (Math.max(...xs) - Math.min(...xs)) / Math.min(...xs);

function readTotal(file: string): number {
  const text = readFileSync(file, 'utf8');
  const match = /^(?:totals|summary):\s+(\d+)/m.exec(text);
  if (!match) throw new Error(`${file}: no totals line`);
  return Number(match[1]);
}

async function measureBlock(server: Server): Promise<number> {
  await server.collectGarbage();
  monitor(server, 'zero');
  monitor(server, 'instrumentation on');
  await block(server.url, requests);
  monitor(server, 'dump');
  monitor(server, 'instrumentation off');
  server.dumps++;
  return readTotal(`${server.outFile}.${server.dumps}`) / requests;
}

async function measureVariant(
  comparison: Comparison,
  variant: (typeof variants)[number],
  env: Record<string, string>,
): Promise<VariantResult> {
  const slug = comparison.name.replace(/[^a-z0-9]+/gi, '-').replace(/-$/, '');
  const name = `${slug}-${variant.key}`;
  const t0 = performance.now();
  const server = await startUnderCallgrind(
    name,
    comparison.framework,
    variant.key === 'generated' ? 'generated' : comparison.baseline,
    comparison.database,
    { ...env, ALS: variant.als ? '1' : '0' },
  );
  const startSeconds = (performance.now() - t0) / 1000;
  try {
    for (let i = 0; i < warmupBlocks; i++) {
      await server.collectGarbage();
      await block(server.url, requests);
      mark(server, `warm-up block ${i + 1} done`);
    }
    const blocks: number[] = [];
    let last: number[] = [];
    while (blocks.length < maxBlocks) {
      blocks.push(await measureBlock(server));
      mark(server, `measured block ${blocks.length} done`);
      last = blocks.slice(-repeats);
      if (last.length === repeats && spreadOf(last) <= tolerance) break;
    }
    const result: VariantResult = {
      instructionsPerRequest: median(last),
      spread: spreadOf(last),
      converged: last.length === repeats && spreadOf(last) <= tolerance,
      blocks: blocks.map((x) => Math.round(x)),
      startSeconds: Number(startSeconds.toFixed(1)),
      seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
    };
    console.log(
      `  ${variant.key.padEnd(12)} ${fmt(result.instructionsPerRequest)} instructions/request ` +
        `(blocks: ${result.blocks.map(fmt).join(', ')}; spread of last ${last.length} ` +
        `${pct(result.spread, 2)}${result.converged ? '' : ', NOT CONVERGED'}; ${result.seconds.toFixed(0)} s)`,
    );
    return result;
  } finally {
    await server.stop();
  }
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
const pct = (x: number, digits = 1) => `${(x * 100).toFixed(digits)}%`;

// ---------------------------------------------------------------------------------------------
// Run

interface Row {
  name: string;
  framework: Framework;
  database: DatabaseId;
  generated: VariantResult;
  baseline: VariantResult;
  baselineAls: VariantResult;
  /** generated / baseline, instructions per request (lower is better; 1.05 = 5% more). */
  ratio: number;
  ratioAls: number;
  alsOverBaseline: number;
}

const startedAt = performance.now();
const loadAverageBefore = loadavg();
const needsPostgres = comparisons.some((c) => c.database === 'postgres');
const postgres = needsPostgres && !process.env.DATABASE_URL ? await startPostgres() : undefined;
const postgresUrl = process.env.DATABASE_URL ?? postgres?.url;
const rows: Row[] = [];
try {
  for (const database of new Set(comparisons.map((c) => c.database))) await generate(database);
  const sqlitePath = join(benchDir, '.generated', 'bench-instructions.db');
  console.log(
    `${comparisons.length} comparison(s) × 3 servers under callgrind; blocks of ${requests} ` +
      `requests over ${concurrency} connections, ${warmupBlocks} warm-up block(s), then until ` +
      `${repeats} in a row agree within ${pct(tolerance)} (at most ${maxBlocks})\n`,
  );
  for (const comparison of comparisons) {
    console.log(comparison.name);
    const env = await prepareDatabase(
      comparison.database,
      comparison.database === 'postgres' ? postgresUrl! : sqlitePath,
    );
    const results = {} as Record<VariantKey, VariantResult>;
    for (const variant of variants) {
      results[variant.key] = await measureVariant(comparison, variant, env);
    }
    const per = (key: VariantKey) => results[key].instructionsPerRequest;
    const row: Row = {
      name: comparison.name,
      framework: comparison.framework,
      database: comparison.database,
      generated: results.generated,
      baseline: results.baseline,
      baselineAls: results['baseline-als'],
      ratio: per('generated') / per('baseline'),
      ratioAls: per('generated') / per('baseline-als'),
      alsOverBaseline: per('baseline-als') / per('baseline'),
    };
    rows.push(row);
    console.log(
      `  → generated/baseline ${pct(row.ratio)}, generated/baseline+ALS ${pct(row.ratioAls)}, ` +
        `baseline+ALS/baseline ${pct(row.alsOverBaseline)}\n`,
    );
  }
} finally {
  await postgres?.stop();
}

const machine = {
  ...machineInfo(loadAverageBefore),
  valgrind: valgrindVersion,
  minutes: Number(((performance.now() - startedAt) / 60_000).toFixed(1)),
};
const settings = {
  requests,
  concurrency,
  warmupBlocks,
  repeats,
  maxBlocks,
  tolerance,
  nodeFlags: ['--expose-gc', ...heapFlags, ...extraNodeFlags],
};
const resultsDir = join(benchDir, '..', 'results');
mkdirSync(resultsDir, { recursive: true });
const round = (x: number, digits: number) => Number(x.toFixed(digits));
const variantJson = (r: VariantResult) => ({
  ...r,
  instructionsPerRequest: Math.round(r.instructionsPerRequest),
  spread: round(r.spread, 4),
});
const rowJson = (row: Row) => ({
  ...row,
  ratio: round(row.ratio, 4),
  ratioAls: round(row.ratioAls, 4),
  alsOverBaseline: round(row.alsOverBaseline, 4),
  generated: variantJson(row.generated),
  baseline: variantJson(row.baseline),
  baselineAls: variantJson(row.baselineAls),
});
writeFileSync(
  join(resultsDir, `http-instructions${resultsSuffix}.json`),
  `${JSON.stringify({ machine, settings, rows: rows.map(rowJson) }, null, 2)}\n`,
);

const spreadText = (row: Row) =>
  [row.generated, row.baseline, row.baselineAls]
    .map((r) => `${pct(r.spread, 2)}${r.converged ? '' : '!'}`)
    .join(' / ');
console.log(
  '\n| comparison | generated instr/req | baseline instr/req | baseline+ALS instr/req | ' +
    'generated/baseline | generated/baseline+ALS | baseline+ALS/baseline | spread (gen / base / base+ALS) |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const row of rows) {
  console.log(
    `| ${row.name} | ${fmt(row.generated.instructionsPerRequest)} | ` +
      `${fmt(row.baseline.instructionsPerRequest)} | ${fmt(row.baselineAls.instructionsPerRequest)} | ` +
      `${pct(row.ratio)} | ${pct(row.ratioAls)} | ${pct(row.alsOverBaseline)} | ${spreadText(row)} |`,
  );
}
console.log(
  `\nmachine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.valgrind}, ` +
    `${machine.date}; ${machine.minutes} min. Instructions of the server process only ` +
    '(not the kernel, the client or PostgreSQL). Spread: (max − min) / min of the last ' +
    `${repeats} blocks; ! = not within ${pct(tolerance)} after ${maxBlocks} blocks.`,
);
