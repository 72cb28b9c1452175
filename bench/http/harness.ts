// What the HTTP benchmarks add to the load tests' servers (test/support/apps.ts): the servers on
// another Node.js (BENCH_NODE), CPU pinning and a process's CPU time (Linux), one checked request,
// and the machine's description for the results.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { type Agent, request } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DatabaseId } from '../../src/cli/targets.ts';
import {
  type Framework,
  type Mode,
  type RunningServer,
  startServer,
} from '../../test/support/apps.ts';

export type { Framework, Mode, RunningServer };

export const benchDir = dirname(fileURLToPath(import.meta.url));

/**
 * The node that runs the servers: BENCH_NODE (a path) to measure them on another Node.js
 * version than this script's, e.g. Node 24, whose AsyncLocalStorage needs no promise hooks.
 */
export const serverNode = process.env.BENCH_NODE ?? process.execPath;

/** That node's version, e.g. 'v24.9.0'. */
export const serverNodeVersion =
  serverNode === process.execPath
    ? process.version
    : execFileSync(serverNode, ['--version'], { encoding: 'utf8' }).trim();

/**
 * '' when the servers run on this script's Node.js major, else e.g. '-node24': results of
 * another major go to files of their own.
 */
export const resultsSuffix =
  serverNodeVersion.split('.')[0] === process.version.split('.')[0]
    ? ''
    : `-node${serverNodeVersion.split('.')[0]!.slice(1)}`;
/** The generated files, databases and results of the HTTP benchmarks. */
export const generatedDir = join(benchDir, '.generated');

/**
 * startServer() on the servers' node (BENCH_NODE), with BENCH_NODE_OPTIONS added to its flags,
 * e.g. '--cpu-prof' for profiling.
 */
export function startBenchServer(
  framework: Framework,
  mode: Mode,
  database: DatabaseId,
  env: Record<string, string>,
): Promise<RunningServer> {
  return startServer(framework, mode, database, env, {
    node: serverNode,
    nodeOptions: process.env.BENCH_NODE_OPTIONS?.split(' ').filter(Boolean) ?? [],
  });
}

/** Which CPUs the server gets and which everything else (load generator, PostgreSQL, this script). */
export interface CpuPlan {
  server: string;
  others: string;
}

const onPath = (name: string) =>
  spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim() !== '';

/** The CPUs this process may run on ('0-3,6' in /proc/self/status), else 0..n-1. */
function allowedCpus(fallbackCount: number): number[] {
  const list = existsSync('/proc/self/status')
    ? /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]
    : undefined;
  if (!list) return Array.from({ length: fallbackCount }, (_, i) => i);
  return list.split(',').flatMap((part) => {
    const [from, to = from] = part.split('-').map(Number) as [number, number?];
    return Array.from({ length: to! - from + 1 }, (_, i) => from + i);
  });
}

/**
 * The server alone on the last CPU, everything else on the rest: with `taskset` on PATH and at
 * least two CPUs; otherwise undefined (nothing is pinned).
 */
export function cpuPlan(cpuCount: number): CpuPlan | undefined {
  if (process.platform !== 'linux' || !onPath('taskset')) return undefined;
  const cpus = allowedCpus(cpuCount);
  if (cpus.length < 2) return undefined;
  return { server: String(cpus.at(-1)), others: cpus.slice(0, -1).join(',') };
}

/** Pins every thread of `pid` (`taskset -a`: Node's and libuv's threads too) to `cpus`. */
export function pin(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

const clockTicks = (() => {
  const ticks = Number(
    spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim() || Number.NaN,
  );
  return Number.isFinite(ticks) && ticks > 0 ? ticks : 100;
})();

/**
 * User + system CPU time of `pid` (all its threads) in µs, from /proc/<pid>/stat; undefined where
 * there is no /proc. Resolution is one clock tick (10 ms at the usual 100 Hz).
 */
export function cpuMicros(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The fields after the command name, which may itself hold spaces: state is [0], utime [11], stime [12].
  const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / clockTicks;
}

/** The parent process id of `pid`, from /proc; undefined where there is no /proc. */
export function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** Busy and total jiffies of each CPU, from /proc/stat; empty where there is none. */
export function cpuTimes(): { cpu: number; busy: number; total: number }[] {
  if (!existsSync('/proc/stat')) return [];
  return readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((line) => /^cpu\d/.test(line))
    .map((line) => {
      const [name, ...rest] = line.split(/\s+/);
      const f = rest.map(Number);
      // user nice system idle iowait irq softirq steal
      const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0);
      const total = busy + f[3]! + f[4]!;
      return { cpu: Number(name!.slice(3)), busy, total };
    });
}

/**
 * One GET /users/42 on `agent`, checked: status 200 and the right user, else it rejects with
 * what came back.
 */
export function getUser(url: string, agent: Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/users/42`, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`${url}/users/42: ${res.statusCode} ${body}`));
          return;
        }
        const user = JSON.parse(body);
        if (user?.id !== 42 || user?.name !== 'user 42') {
          reject(new Error(`${url}/users/42: unexpected body ${body}`));
          return;
        }
        resolve();
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** What the results files record of the machine and the run, given the load average at start. */
export function machineInfo(loadAverageBefore: number[]) {
  const rounded = (xs: number[]) => xs.map((x) => Number(x.toFixed(2)));
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    node: serverNodeVersion,
    date: new Date().toISOString().slice(0, 10),
    loadAverage: { before: rounded(loadAverageBefore), after: rounded(loadavg()) },
  };
}
