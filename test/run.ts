// `npm test`: the whole suite on every supported Node.js line (22, 24, 26) and on the oldest
// release package.json's `engines` admits (22.16.0). The newest line runs everything; before it
// a runner runs only what can differ there (the sets below): the oldest release how the CLI
// starts and packages load, the lines between how Node.js serves requests, both the runtime.
// Each line's official binary comes from the npm registry with a better-sqlite3 built for it
// (test/support/node-lines.ts). One throwaway PostgreSQL serves the whole run (unless
// DATABASE_URL is set), and one throwaway MariaDB (unless MYSQL_URL is set; none when
// mariadb-server is not installed, and the MySQL tests say they are skipped). The MySQL tests
// run on the last runner only (the newest line): mysql2 is plain JavaScript, so nothing they
// check differs by line; the others get TEST_MYSQL=off.
// The summaries of the lines before the last are recapped above the last runner's; after it come
// only the skipped tests, each marked expected or not (in CI an unexpected skip fails the run).
//
//   node --import tsx test/run.ts [files...]        those files, on this node
//   node --import tsx test/run.ts --node 24 [files]  on one supported line (or 22.16.0, the oldest
//                                                    release `engines` admits)
//   npm run test:quick (--quick)  the CLI and SQLite runtime tests only, two files at a time, no
//                                 server of any kind (no PostgreSQL, PgBouncer, tmux, HTTP apps)
//
// Whatever the tests do, the run leaves nothing behind:
// - the run gets a temporary folder of its own (TMPDIR for the tests, so os.tmpdir() points
//   there), removed at the end;
// - each runner and everything it starts run in a process group of their own, killed at the end;
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
import { findMariadbBinaries, startMariadb } from './support/mariadb.ts';
import {
  type NodeLine,
  oldestRelease,
  provisionNodeLine,
  supportedLines,
} from './support/node-lines.ts';
import { startPostgres } from './support/postgres.ts';

// Per test, and so per test file: the CLI install tests build better-sqlite3 from source twice.
const testMillis = 30 * 60_000;
const runMillis = Number(process.env.TEST_RUN_MINUTES ?? 85) * 60_000;

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

/** CI=true (or 1), as GitHub Actions and .ci/run set it: an unexpected skip fails the run. */
const ci = /^(true|1)$/i.test(process.env.CI ?? '');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const lineFlag = args.indexOf('--node');
const onlyLine = lineFlag === -1 ? undefined : args[lineFlag + 1];
const named = args.filter(
  (arg, i) => arg !== '--quick' && (lineFlag === -1 || (i !== lineFlag && i !== lineFlag + 1)),
);

/** Which files run on which node: one entry per runner, in order. */
interface Run {
  /** '24', or one release: '22.16.0'. */
  line?: string;
  files: string[];
  /** TEST_NODE_LINE: the oldest release, or a line between it and the newest (none: the newest). */
  role?: 'oldest' | 'between';
}
// Which runner runs what. Every runner: the runtime tests, and the adapters and NestJS ones
// (TEST_NODE_LINE narrows the adapters' cases before the newest line).
// What does not depend on the line, once, on the newest: the installs with real package managers
// and the packed tarball (they build better-sqlite3 from source), the linters over generated code,
// and the CLI's own logic.
const newestOnly = new Set([
  'test/cli/detect.test.ts',
  'test/cli/fingerprint.test.ts',
  'test/cli/install.test.ts',
  'test/cli/package.test.ts',
  'test/cli/plan.test.ts',
  'test/cli/render.test.ts',
  'test/cli/style.test.ts',
  'test/cli/write.test.ts',
  'test/e2e/lint.test.ts',
]);
// How the CLI starts and prompts, and how ORM and scaffolder packages load (require(esm),
// node:sqlite, WASM): the oldest release engines admits and the newest line bound it.
const loading = new Set([
  'test/cli/flags.test.ts',
  'test/cli/interactive.test.ts',
  'test/e2e/orm.test.ts',
  'test/e2e/prisma.test.ts',
  'test/e2e/scaffolds.test.ts',
]);
// How Node.js serves, closes and streams requests, which differs by line: each line's latest
// release (the 22 line's covers 22.16.0).
const serving = new Set([
  'test/e2e/lifecycle.test.ts',
  'test/e2e/session-state.test.ts',
  'test/e2e/shutdown.test.ts',
  'test/e2e/streams.test.ts',
  'test/e2e/transactions.test.ts',
]);
const everyRunner = (file: string) =>
  /^test\/(runtime|cli|e2e)\//.test(file) && !newestOnly.has(file);
let runs: Run[];
if (quick) runs = [{ files: quickFiles }];
else if (named.length > 0) runs = [{ line: onlyLine, files: named }];
else if (onlyLine !== undefined) runs = [{ line: onlyLine, files: testFiles() }];
else {
  const all = testFiles();
  const newest = String(supportedLines.at(-1));
  runs = [oldestRelease, ...supportedLines.map(String)].map((line) => {
    const role = line === newest ? undefined : line === oldestRelease ? 'oldest' : 'between';
    const files = all.filter(
      (file) =>
        role === undefined ||
        (everyRunner(file) && !(role === 'oldest' ? serving : loading).has(file)),
    );
    return { line, files, role };
  });
}

// Sticky and world-writable like /tmp: PostgreSQL and PgBouncer run as another user when we are root.
const runDir = mkdtempSync(join(tmpdir(), 'cdh-run-'));
chmodSync(runDir, 0o1777);
process.env.TMPDIR = runDir;

let server: Awaited<ReturnType<typeof startPostgres>> | undefined;
let mariadb: Awaited<ReturnType<typeof startMariadb>> | undefined;
let code = 0;
let current: ReturnType<typeof spawn> | undefined;
const killGroup = (signal: NodeJS.Signals) => {
  try {
    if (current?.pid) process.kill(-current.pid, signal);
  } catch {
    // The group is empty.
  }
};
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupted = true;
    killGroup(signal);
  });
}
const deadline = setTimeout(() => {
  console.error(`test/run.ts: the run took longer than ${runMillis / 60_000} min; stopping it`);
  interrupted = true;
  killGroup('SIGKILL');
}, runMillis);

/** Runs `files` in one runner on `line` (undefined: this node); resolves with its exit code. */
async function runFiles(
  line: NodeLine | undefined,
  files: string[],
  tap: string,
  mysql: boolean,
  role: Run['role'],
): Promise<number> {
  const env = {
    ...process.env,
    ...line?.env,
    ...(server && { DATABASE_URL: server.url }),
    ...(mariadb && { MYSQL_URL: mariadb.url }),
    ...(!mysql && { TEST_MYSQL: 'off' }),
    ...(role && { TEST_NODE_LINE: role }),
  };
  current = spawn(
    line?.node ?? process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      // A second copy in TAP, for the recap of the lines that ran before the last.
      '--test-reporter=tap',
      `--test-reporter-destination=${tap}`,
      // One file at a time: the load tests measure, and CI has two cores.
      `--test-concurrency=${quick ? 2 : 1}`,
      `--test-timeout=${testMillis}`,
      // A test file whose tests are done exits even if something still holds its event loop.
      '--test-force-exit',
      ...files,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'], env, detached: true },
  );
  const status: number = await new Promise((resolve) => {
    current!.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0)));
  });
  // Servers, PgBouncers, CLIs: whatever a test started and left running.
  killGroup('SIGKILL');
  return status;
}

/**
 * The skips the suite expects, and why: nothing else may be skipped in CI (CI=true), where
 * everything is meant to run (.ci/run installs PostgreSQL, PgBouncer and tmux). Elsewhere a
 * skip (no tmux, no pgbouncer) is listed at the end and does not fail the run.
 */
const expectedSkips: { test: RegExp; onLine: (major: number) => boolean; why: string }[] = [
  {
    test: /^restify recipe × /,
    onLine: (major) => major >= 24,
    why: "restify 11 calls process.binding('http_parser'), gone since Node.js 24 (README: Node 22 only)",
  },
  {
    test: /^mysql[: ]/,
    onLine: (major) => major < supportedLines.at(-1)!,
    why: 'the MySQL tests run on the newest line only (mysql2 is plain JavaScript)',
  },
];

interface Skip {
  label: string;
  major: number;
  test: string;
  reason: string;
  expected: boolean;
}

/** Every skipped test in a TAP report (node's reporter: `ok 3 - name # SKIP reason`). */
function tapSkips(tap: string, label: string, major: number): Skip[] {
  if (!existsSync(tap)) return [];
  const skips: Skip[] = [];
  for (const line of readFileSync(tap, 'utf8').split('\n')) {
    const match = /^\s*ok \d+ - (.*?) # SKIP(?: (.*))?$/.exec(line);
    if (!match) continue;
    const test = match[1]!.replace(/\\#/g, '#');
    const reason = match[2]?.trim() || '(no reason given)';
    const expected = expectedSkips.some((skip) => skip.test.test(test) && skip.onLine(major));
    skips.push({ label, major, test, reason, expected });
  }
  return skips;
}

/** "tests 250, pass 248, fail 2, skipped 0" from a TAP report's closing comments. */
function tapSummary(tap: string): string {
  if (!existsSync(tap)) return 'no report';
  const text = readFileSync(tap, 'utf8');
  const count = (name: string) => new RegExp(`^# ${name} (\\d+)$`, 'm').exec(text)?.[1] ?? '?';
  return ['tests', 'pass', 'fail', 'skipped'].map((name) => `${name} ${count(name)}`).join(', ');
}

try {
  // Every line is ready before the first test, so no build output lands between test reports.
  const lines = new Map<string, NodeLine>();
  for (const run of runs) {
    if (run.line !== undefined && !lines.has(run.line)) {
      lines.set(
        run.line,
        provisionNodeLine(run.line, (message) => console.log(message)),
      );
    }
  }
  if (!quick && !process.env.DATABASE_URL) {
    server = await startPostgres();
    console.log(`PostgreSQL for the tests: ${server.binaries.source} (${server.binaries.initdb})`);
  }
  if (!quick && !process.env.MYSQL_URL && findMariadbBinaries()) {
    mariadb = await startMariadb();
    console.log(`MariaDB for the tests: ${findMariadbBinaries()!.server}`);
  }
  const recap: string[] = [];
  const skips: Skip[] = [];
  for (const [index, run] of runs.entries()) {
    if (interrupted) break;
    const line = run.line === undefined ? undefined : lines.get(run.line);
    const label = line ? `Node ${line.version}` : `Node ${process.version} (this node)`;
    if (index === runs.length - 1 && recap.length > 0) {
      console.log(`\n${recap.join('\n')}`);
    }
    console.log(`\n=== ${label}: ${run.files.length} test files\n`);
    const tap = join(runDir, `report-${index}.tap`);
    const last = index === runs.length - 1;
    const status = await runFiles(line, run.files, tap, last, run.role);
    if (status !== 0) code = status;
    const major = Number((line?.version ?? process.version).replace(/^v/, '').split('.')[0]);
    skips.push(...tapSkips(tap, label, major));
    recap.push(`${label}: ${tapSummary(tap)}${status === 0 ? '' : ` (exit ${status})`}`);
  }
  if (interrupted && code === 0) code = 1;
  // What did not run, after the summaries: a skip fails nothing in node's runner, so it is said
  // here, and in CI a skip nobody expected fails the run.
  if (skips.length > 0) {
    console.log(`\nSkipped: ${skips.length} test${skips.length === 1 ? '' : 's'}`);
    for (const skip of skips) {
      const mark = skip.expected ? 'expected' : 'NOT EXPECTED';
      console.log(`  ${skip.label}: ${skip.test} (${mark}: ${skip.reason})`);
    }
  }
  const unexpected = skips.filter((skip) => !skip.expected);
  if (ci && unexpected.length > 0) {
    console.error(
      `test/run.ts: ${unexpected.length} test(s) skipped in CI, where everything is meant to ` +
        'run; install what they name, or add them to expectedSkips in test/run.ts with the reason',
    );
    if (code === 0) code = 1;
  }
} catch (error) {
  console.error(error);
  code = 1;
} finally {
  clearTimeout(deadline);
  await server?.stop();
  await mariadb?.stop();
  stopStrayPostgres(runDir);
  rmSync(runDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
}
process.exit(code);
