// What the runtime benchmarks share: the runtime loaded as users run it (from the working tree,
// or from a commit, to compare two versions in one process), and a paired comparison of two
// ways to do one operation, alternated in ABBA order over many short rounds.
import { createHook } from 'node:async_hooks';
import { execFileSync, execSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { transform } from 'sucrase';

type PostgresModule = typeof import('../../src/runtime/runtime-postgres.ts');
type SqliteModule = typeof import('../../src/runtime/runtime-sqlite.ts');
type CoreModule = typeof import('../../src/runtime/runtime.ts');
export type Runtime = PostgresModule & SqliteModule & CoreModule;

/**
 * The runtime stripped to plain JavaScript by sucrase (as the CLI does) into
 * bench/.cache/runtime[-<commit>], not run through tsx, whose esbuild transform adds a __name()
 * call to every function and closure and would inflate the runtime's cost several times over.
 * `commit` loads src/runtime as it was at that commit (git show) instead of the working tree.
 */
export async function loadRuntime(commit?: string): Promise<Runtime> {
  const out = join('bench', '.cache', commit === undefined ? 'runtime' : `runtime-${commit}`);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n');
  const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8' });
  const files =
    commit === undefined
      ? readdirSync(join('src', 'runtime'))
      : git('ls-tree', '--name-only', commit, 'src/runtime/')
          .split('\n')
          .filter(Boolean)
          .map((path) => path.replace('src/runtime/', ''));
  for (const file of files) {
    const path = join('src', 'runtime', file);
    const source =
      commit === undefined ? readFileSync(path, 'utf8') : git('show', `${commit}:${path}`);
    const { code } = transform(source, { transforms: ['typescript'], disableESTransforms: true });
    writeFileSync(join(out, file.replace(/\.ts$/, '.js')), code);
  }
  const load = (name: string) => import(join(process.cwd(), out, `${name}.js`));
  const [core, postgres, sqlite] = await Promise.all(
    ['runtime', 'runtime-postgres', 'runtime-sqlite'].map(load),
  );
  return { ...core, ...postgres, ...sqlite };
}

export type Op = (i: number) => Promise<unknown>;

export interface Sample {
  /** Wall-clock µs per operation. */
  wall: number;
  /** This process's CPU µs (user + system) per operation: the client-side cost, which the
   * machine's other load disturbs far less than wall-clock time. */
  cpu: number;
}

export interface Result {
  name: string;
  /** The first way (the raw driver, or the code before a change). */
  a: Sample;
  /** The second way (the runtime, or the code after the change). */
  b: Sample;
  /** Median over rounds of (b - a) wall time in the same round. */
  addedWall: number;
  /** The same for CPU time. */
  addedCpu: number;
  /** Promises created per operation (a, b): exact, whatever the machine's load. */
  promises: [number, number];
}

/** Counts the promises one operation creates; each costs Node 20's AsyncLocalStorage a hook call. */
async function promisesPerOp(op: Op): Promise<number> {
  let count = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === 'PROMISE') count++;
    },
  });
  await op(0);
  hook.enable();
  for (let i = 0; i < 100; i++) await op(i);
  hook.disable();
  return count / 100;
}

/** Runs `ops` operations with `concurrency` in flight; `i` goes from 0 to rows - 1 and round. */
async function timeOps(op: Op, ops: number, concurrency: number, rows: number): Promise<Sample> {
  let next = 0;
  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ops) await op(next++ % rows);
    }),
  );
  const wall = Number(process.hrtime.bigint() - started) / 1000 / ops;
  const cpu = process.cpuUsage(cpuBefore);
  return { wall, cpu: (cpu.user + cpu.system) / ops };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface CompareOptions {
  rounds: number;
  /** Operations per round and side. */
  ops: number;
  concurrency: number;
  /** The operation's argument cycles through 0..rows-1 (the table's ids). */
  rows: number;
}

/**
 * Many short rounds (`ops` operations each), a and b alternated in ABBA order. Short rounds and
 * medians keep a busy machine's load spikes from landing on one side only.
 */
export async function compare(
  name: string,
  a: Op,
  b: Op,
  options: CompareOptions,
): Promise<Result> {
  const { rounds, ops, concurrency, rows } = options;
  const time = (op: Op) => timeOps(op, ops, concurrency, rows);
  // Warm-up: JIT, connections opened, statements cached.
  for (let i = 0; i < 20; i++) {
    await time(a);
    await time(b);
  }
  const aRuns: Sample[] = [];
  const bRuns: Sample[] = [];
  for (let round = 0; round < rounds; round++) {
    // ABBA: neither side always runs first.
    if (round % 2 === 0) {
      aRuns.push(await time(a));
      bRuns.push(await time(b));
    } else {
      bRuns.push(await time(b));
      aRuns.push(await time(a));
    }
  }
  const summary = (runs: Sample[]): Sample => ({
    wall: median(runs.map((r) => r.wall)),
    cpu: median(runs.map((r) => r.cpu)),
  });
  const result: Result = {
    name,
    a: summary(aRuns),
    b: summary(bRuns),
    addedWall: median(bRuns.map((r, round) => r.wall - aRuns[round]!.wall)),
    addedCpu: median(bRuns.map((r, round) => r.cpu - aRuns[round]!.cpu)),
    promises: [await promisesPerOp(a), await promisesPerOp(b)],
  };
  process.stderr.write(
    `${name}: ${result.a.wall.toFixed(2)} µs → ${result.b.wall.toFixed(2)} µs\n`,
  );
  return result;
}

/** One Markdown table row per result: a, b, added, ratio, CPU, promises. */
export function printTable(columns: { a: string; b: string }, results: Result[]): void {
  const { a, b } = columns;
  console.log(
    `| case | ${a} wall (µs/op) | ${b} wall (µs/op) | added wall (µs/op) | wall ratio | ` +
      `${a} CPU (µs/op) | ${b} CPU (µs/op) | added CPU (µs/op) | promises/op ${a} → ${b} |`,
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  const f = (n: number) => n.toFixed(2);
  for (const r of results) {
    const ratio = (r.a.wall + r.addedWall) / r.a.wall;
    console.log(
      `| ${r.name} | ${f(r.a.wall)} | ${f(r.b.wall)} | ${f(r.addedWall)} | ` +
        `${ratio.toFixed(3)} | ${f(r.a.cpu)} | ${f(r.b.cpu)} | ${f(r.addedCpu)} | ` +
        `${r.promises[0]} → ${r.promises[1]} |`,
    );
  }
}

export function machine(): string {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const nproc = execSync('nproc', { encoding: 'utf8' }).trim();
  return `${model}, nproc ${nproc}, Node ${process.version}, ${process.platform} ${process.arch}`;
}
