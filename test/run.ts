// `npm test`: starts one throwaway PostgreSQL for the whole run (unless DATABASE_URL is set),
// runs every test/*/*.test.ts (or the files given) with node's test runner, then removes the
// server. Nothing is printed after the runner's summary.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startPostgres } from './support/postgres.ts';

function testFiles(): string[] {
  const files: string[] = [];
  for (const dir of readdirSync('test')) {
    const path = join('test', dir);
    if (!statSync(path).isDirectory()) continue;
    for (const file of readdirSync(path).sort()) {
      if (file.endsWith('.test.ts')) files.push(join(path, file));
    }
  }
  return files;
}

const files = process.argv.length > 2 ? process.argv.slice(2) : testFiles();
const server = process.env.DATABASE_URL ? undefined : await startPostgres();
const env = { ...process.env, ...(server && { DATABASE_URL: server.url }) };

const runner = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', ...files],
  { stdio: 'inherit', env },
);
const code: number = await new Promise((resolve) => {
  runner.on('exit', (status, signal) => resolve(status ?? (signal ? 1 : 0)));
});
await server?.stop();
process.exit(code);
