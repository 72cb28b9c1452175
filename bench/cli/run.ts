// CLI startup benchmark, no hyperfine needed: the built bin generating one target into a fresh
// TypeScript project (--yes --no-install) against `node -e 0`, the floor any Node CLI pays.
// Runs alternate (baseline, CLI, baseline, …) so drift in machine load hits both alike; the
// report gives medians and their ratio. Target: under 1.3×.
//
//   npm run build && npm run bench:cli [-- --rounds 20]
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repoRoot, 'bin', 'create-db-hooks.cjs');
const roundsArg = process.argv.indexOf('--rounds');
const rounds = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 20;
const warmup = 3;

const work = mkdtempSync(join(tmpdir(), 'cdh-bench-'));
const template = join(work, 'template');
mkdirSync(join(template, 'src'), { recursive: true });
writeFileSync(
  join(template, 'package.json'),
  JSON.stringify({ name: 'bench', type: 'module', dependencies: { express: '^5.1.0' } }),
);
writeFileSync(join(template, 'tsconfig.json'), '{}\n');
writeFileSync(join(template, 'src', 'main.ts'), '');

function timed(args: string[]): number {
  const start = process.hrtime.bigint();
  const result = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0) {
    throw new Error(`${args.join(' ')} exited ${result.status}:\n${result.stderr}`);
  }
  return ms;
}

let n = 0;
function cliRun(): number {
  const project = join(work, `p${n++}`);
  cpSync(template, project, { recursive: true });
  return timed([bin, '-C', project, '-f', 'express', '--yes', '--no-install']);
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

for (let i = 0; i < warmup; i++) {
  timed(['-e', '0']);
  cliRun();
}
const baseline: number[] = [];
const cli: number[] = [];
for (let i = 0; i < rounds; i++) {
  baseline.push(timed(['-e', '0']));
  cli.push(cliRun());
}
rmSync(work, { recursive: true, force: true });

const b = median(baseline);
const c = median(cli);
// Each round's CLI time over the baseline run just before it: robust when the machine's load
// drifts during the run.
const paired = median(cli.map((ms, i) => ms / baseline[i]!));
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
console.log(
  `machine: ${cpus()[0]?.model.trim()} × ${cpus().length}, Node ${process.version}, ${process.platform}, load ${loadavg()[0]!.toFixed(2)}`,
);
console.log(`rounds: ${rounds} alternating (after ${warmup} warm-up pairs)`);
console.log(
  `node -e 0                                  median ${fmt(b)}  (min ${fmt(Math.min(...baseline))})`,
);
console.log(
  `create-db-hooks -f express --yes (TS, new) median ${fmt(c)}  (min ${fmt(Math.min(...cli))})`,
);
console.log(
  `ratio of medians ${(c / b).toFixed(2)}×, median of paired ratios ${paired.toFixed(2)}× (target < 1.30×)`,
);
