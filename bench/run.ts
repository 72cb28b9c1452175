// `npm run bench`: every benchmark, one after another, each printing its own results. The HTTP
// benchmark needs its frameworks: `npm ci --prefix bench/http` once.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const benchmarks = ['bench/runtime/run.ts', 'bench/cli/run.ts', 'bench/http/run.ts'];

if (!existsSync('bench/http/node_modules')) {
  console.log('Installing the HTTP benchmark frameworks (npm ci --prefix bench/http)...');
  spawnSync('npm', ['ci', '--prefix', 'bench/http', '--no-audit', '--no-fund'], {
    stdio: 'inherit',
  });
}
for (const script of benchmarks) {
  console.log(`\n=== ${script}\n`);
  const run = spawnSync(process.execPath, ['--import', 'tsx', script, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (run.status !== 0) process.exit(run.status ?? 1);
}

// What `npx create-db-hooks` downloads and unpacks: the package alone, no dependencies.
const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
  encoding: 'utf8',
});
const [info] = JSON.parse(pack.stdout) as {
  size: number;
  unpackedSize: number;
  entryCount: number;
}[];
console.log(
  `\n=== installed size\n\ntarball ${(info!.size / 1024).toFixed(0)} kB, unpacked ` +
    `${(info!.unpackedSize / 1024).toFixed(0)} kB in ${info!.entryCount} files, 0 dependencies`,
);
