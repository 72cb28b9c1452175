// `npm run bench`: every benchmark, one after another, each printing its own results. Everything
// they run on is installed by `npm install`.
import { spawnSync } from 'node:child_process';

// Arguments given to `npm run bench -- …` (e.g. --rounds) go to the timed benchmarks; the async
// resource count is exact and takes none.
const benchmarks = [
  { script: 'bench/runtime/run.ts', takesArguments: true },
  { script: 'bench/cli/run.ts', takesArguments: true },
  { script: 'bench/http/run.ts', takesArguments: true },
  { script: 'bench/http/routes.ts', takesArguments: true },
  { script: 'bench/http/kysely.ts', takesArguments: true },
  { script: 'bench/http/prisma.ts', takesArguments: true },
  { script: 'bench/http/sqlite-writers.ts', takesArguments: true },
  { script: 'bench/http/async-resources.ts', takesArguments: false },
];

for (const { script, takesArguments } of benchmarks) {
  console.log(`\n=== ${script}\n`);
  const args = takesArguments ? process.argv.slice(2) : [];
  const run = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
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
