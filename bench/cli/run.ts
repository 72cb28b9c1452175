// CLI startup benchmark, no hyperfine needed: the built bin generating one target into a fresh
// project (--yes --no-install), TypeScript and JavaScript, against `node -e 0`, the floor any Node
// CLI pays. Runs alternate (baseline, TypeScript, JavaScript, baseline, …) so drift in machine
// load hits all alike; the report gives medians and their ratios. Target: under 1.3× for both.
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
/** An Express project with a src/ folder: TypeScript (tsconfig.json) or JavaScript (none). */
function template(language: 'ts' | 'js'): string {
  const dir = join(work, `template-${language}`);
  mkdirSync(join(dir, 'src'), { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'bench', type: 'module', dependencies: { express: '^5.1.0' } }),
  );
  if (language === 'ts') writeFileSync(join(dir, 'tsconfig.json'), '{}\n');
  writeFileSync(join(dir, 'src', `main.${language}`), '');
  return dir;
}
const templates = { ts: template('ts'), js: template('js') };

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
function cliRun(language: 'ts' | 'js'): number {
  const project = join(work, `p${n++}`);
  cpSync(templates[language], project, { recursive: true });
  return timed([bin, '-C', project, '-f', 'express', '--yes', '--no-install']);
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

for (let i = 0; i < warmup; i++) {
  timed(['-e', '0']);
  cliRun('ts');
  cliRun('js');
}
const baseline: number[] = [];
const runs = { ts: [] as number[], js: [] as number[] };
for (let i = 0; i < rounds; i++) {
  baseline.push(timed(['-e', '0']));
  runs.ts.push(cliRun('ts'));
  runs.js.push(cliRun('js'));
}
rmSync(work, { recursive: true, force: true });

const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
const b = median(baseline);
console.log(
  `machine: ${cpus()[0]?.model.trim()} × ${cpus().length}, Node ${process.version}, ${process.platform}, load ${loadavg()[0]!.toFixed(2)}`,
);
console.log(`rounds: ${rounds} alternating (after ${warmup} warm-up rounds)`);
console.log(`node -e 0                     median ${fmt(b)}  (min ${fmt(Math.min(...baseline))})`);
for (const language of ['ts', 'js'] as const) {
  const times = runs[language];
  const c = median(times);
  // Each round's CLI time over the baseline run of the same round: robust when the machine's
  // load drifts during the run.
  const paired = median(times.map((ms, i) => ms / baseline[i]!));
  const name = language === 'ts' ? 'TypeScript' : 'JavaScript';
  console.log(
    `-f express --yes, ${name} median ${fmt(c)}  (min ${fmt(Math.min(...times))}), ` +
      `ratio of medians ${(c / b).toFixed(2)}×, median of paired ratios ${paired.toFixed(2)}× (target < 1.30×)`,
  );
}
