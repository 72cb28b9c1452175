// What the HTTP benchmarks share to load a server and read the result: the load generator (wrk
// when on PATH, else autocannon) run on the CPUs that are not the server's, PostgreSQL pinned
// beside it, and the statistics of paired rounds (medians, their intervals).
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import pg from 'pg';
import { type CpuPlan, parentPid, pin } from './harness.ts';

export interface Measured {
  requestsPerSecond: number;
  requests: number;
  /** Latency percentiles in ms. */
  p50: number;
  p99: number;
}

export interface LoadOptions {
  connections: number;
  /** The CPUs the load generator runs on (taskset), if pinned. */
  cpus?: string | undefined;
}

const onPath = (name: string) =>
  spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim() !== '';

const wrk = onPath('wrk');

/** e.g. 'wrk 4.1.0', or 'autocannon'. */
export const loadGenerator = wrk
  ? (spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout.match(/wrk \S+/)?.[0] ?? 'wrk')
  : 'autocannon';

const run = promisify(execFile);

const onCpus = (argv: string[], cpus: string | undefined): [string, string[]] =>
  cpus ? ['taskset', ['-c', cpus, ...argv]] : [argv[0]!, argv.slice(1)];

const toMillis = (value: string, unit: string) =>
  Number(value) * ({ us: 1e-3, ms: 1, s: 1e3, m: 6e4 } as Record<string, number>)[unit]!;

async function runWrk(url: string, duration: number, options: LoadOptions): Promise<Measured> {
  const [cmd, argv] = onCpus(
    ['wrk', '-t1', `-c${options.connections}`, `-d${duration}s`, '--latency', url],
    options.cpus,
  );
  const { stdout: out } = await run(cmd, argv, { encoding: 'utf8' });
  const number = (re: RegExp) => {
    const match = re.exec(out);
    if (!match) throw new Error(`${url}: cannot read ${re} in wrk's output:\n${out}`);
    return match;
  };
  const requestsPerSecond = Number(number(/Requests\/sec:\s+([\d.]+)/)[1]);
  const requests = Number(number(/(\d+) requests in /)[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  if (non2xx > 0 || errors > 0 || requests === 0) {
    throw new Error(`${url}: ${non2xx} non-2xx responses, ${errors} socket errors\n${out}`);
  }
  const percentile = (p: number) => {
    const [, value, unit] = number(new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm'));
    return toMillis(value!, unit!);
  };
  return { requestsPerSecond, requests, p50: percentile(50), p99: percentile(99) };
}

async function runAutocannon(
  url: string,
  duration: number,
  options: LoadOptions,
): Promise<Measured> {
  const bin = createRequire(import.meta.url).resolve('autocannon');
  const [cmd, argv] = onCpus(
    [
      process.execPath,
      bin,
      '--json',
      '-c',
      String(options.connections),
      '-d',
      String(duration),
      url,
    ],
    options.cpus,
  );
  const { stdout } = await run(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 24 });
  const result = JSON.parse(stdout);
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
    throw new Error(
      `${url}: ${result.non2xx} non-2xx responses, ${result.errors} errors, ${result.timeouts} timeouts`,
    );
  }
  return {
    requestsPerSecond: result.requests.average,
    requests: result.requests.total,
    p50: result.latency.p50,
    p99: result.latency.p99,
  };
}

/** Loads `url` (the full address, path included) for `duration` seconds; fails on any error. */
export const load: (url: string, duration: number, options: LoadOptions) => Promise<Measured> = wrk
  ? runWrk
  : runAutocannon;

/** PostgreSQL's postmaster and its children onto `cpuList` (new backends inherit it). */
export async function pinPostgres(url: string, cpuList: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  // The backend's parent is the postmaster; read it while this backend still exists.
  let postmaster: number | undefined;
  try {
    const backend = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    postmaster = parentPid(backend);
  } finally {
    await client.end();
  }
  const comm = postmaster ? readFileSync(`/proc/${postmaster}/comm`, 'utf8').trim() : '';
  if (!postmaster || !comm.startsWith('postgres')) {
    return 'postgres: not pinned (postmaster not found)';
  }
  const children = spawnSync('pgrep', ['-P', String(postmaster)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
  pin(postmaster, cpuList);
  for (const child of children) {
    try {
      pin(child, cpuList);
    } catch {
      // Gone in the meantime.
    }
  }
  return `PostgreSQL (postmaster ${postmaster} and ${children.length} children) → CPU ${cpuList}`;
}

export const median = (xs: number[]): number => {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/**
 * A distribution-free 95% confidence interval for the median: the k-th smallest and k-th largest
 * value, k the largest with P(Binomial(n, ½) < k) ≤ 2.5%. Undefined below 6 values.
 */
export function medianInterval(xs: number[]): [number, number] | undefined {
  const n = xs.length;
  const sorted = [...xs].sort((x, y) => x - y);
  let below = 0; // P(Binomial(n, ½) < k)
  let choose = 1; // C(n, k)
  let k = 0;
  while (k < n) {
    const next = below + choose / 2 ** n;
    if (next > 0.025) break;
    below = next;
    choose = (choose * (n - k)) / (k + 1);
    k++;
  }
  return k === 0 ? undefined : [sorted[k - 1]!, sorted[n - k]!];
}

export const percent = (ratio: number): string => `${(ratio * 100).toFixed(1)}%`;

/** ' (95% CI 97.1–101.3%)', or '' without an interval. */
export const interval = (range: [number, number] | undefined): string =>
  range ? ` (95% CI ${(range[0] * 100).toFixed(1)}–${(range[1] * 100).toFixed(1)}%)` : '';

/** What a results file records of how the servers were loaded: pinning, load generator, rounds. */
export function loadInfo(
  plan: CpuPlan | undefined,
  run: { rounds: number; seconds: number; connections: number },
) {
  return {
    pinning: plan
      ? `servers on CPU ${plan.server}; ${loadGenerator}, PostgreSQL and the runner on CPU ${plan.others}`
      : 'off',
    loadGenerator,
    ...run,
  };
}
