// `npm test`: starts one throwaway PostgreSQL for the whole run (unless DATABASE_URL is set),
// runs every test/*/*.test.ts (or the files given) with node's test runner, then removes the
// server. Nothing is printed after the runner's summary.
//
// `npm run test:quick` (--quick): the CLI and SQLite runtime tests only, two files at a time, no
// server of any kind (no PostgreSQL, PgBouncer, tmux, HTTP apps, npm installs).
//
// Whatever the tests do, the run leaves nothing behind:
// - the run gets a temporary folder of its own (TMPDIR for the tests, so os.tmpdir() points
//   there), removed at the end;
// - the runner and everything it starts run in a process group of their own, killed at the end;
// - a PostgreSQL a test started and never stopped (pg_ctl puts it outside that group) is found
//   by its postmaster.pid under the run's folder and stopped;
// - every test has a deadline, and the whole run one too.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres } from './support/postgres.ts';

const testMillis = 10 * 60_000;
const runMillis = Number(process.env.TEST_RUN_MINUTES ?? 80) * 60_000;

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

/** Stops every PostgreSQL whose data folder is somewhere under `dir` (SIGQUIT: immediate). */
function stopStrayPostgres(dir: string): void {
  const visit = (path: string, depth: number) => {
    if (depth > 3 || !existsSync(path)) return;
    const pidFile = join(path, 'postmaster.pid');
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // Already gone.
      }
      return;
    }
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      if (entry.isDirectory()) visit(join(path, entry.name), depth + 1);
    }
  };
  visit(dir, 0);
}

/** The quick tier: tests that start no server; the whole list takes under a minute. */
const quickFiles = [
  'test/cli/detect.test.ts',
  'test/cli/flags.test.ts',
  'test/cli/plan.test.ts',
  'test/cli/render.test.ts',
  'test/cli/write.test.ts',
  'test/runtime/sqlite.test.ts',
];

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const named = args.filter((arg) => arg !== '--quick');
const files = quick ? quickFiles : named.length > 0 ? named : testFiles();
// Sticky and world-writable like /tmp: PostgreSQL and PgBouncer run as another user when we are root.
const runDir = mkdtempSync(join(tmpdir(), 'cdh-run-'));
chmodSync(runDir, 0o1777);
process.env.TMPDIR = runDir;

let server: Awaited<ReturnType<typeof startPostgres>> | undefined;
let code = 1;
try {
  if (!quick && !process.env.DATABASE_URL) {
    server = await startPostgres();
    console.log(`PostgreSQL for the tests: ${server.binaries.source} (${server.binaries.initdb})`);
  }
  const env = { ...process.env, ...(server && { DATABASE_URL: server.url }) };
  const runner = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      '--test-reporter=spec',
      // One file at a time: the load tests measure, and CI has two cores.
      `--test-concurrency=${quick ? 2 : 1}`,
      `--test-timeout=${testMillis}`,
      // A test file whose tests are done exits even if something still holds its event loop.
      '--test-force-exit',
      ...files,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'], env, detached: true },
  );
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-runner.pid!, signal);
    } catch {
      // The group is empty.
    }
  };
  const forward = (signal: NodeJS.Signals) => () => killGroup(signal);
  process.on('SIGINT', forward('SIGINT'));
  process.on('SIGTERM', forward('SIGTERM'));
  const deadline = setTimeout(() => {
    console.error(`test/run.ts: the run took longer than ${runMillis / 60_000} min; stopping it`);
    killGroup('SIGKILL');
  }, runMillis);
  code = await new Promise((resolve) => {
    runner.on('exit', (status, signal) => resolve(status ?? (signal ? 1 : 0)));
  });
  clearTimeout(deadline);
  // Servers, PgBouncers, CLIs: whatever a test started and left running.
  killGroup('SIGKILL');
} finally {
  await server?.stop();
  stopStrayPostgres(runDir);
  rmSync(runDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
}
process.exit(code);
