// closePool() then reopen, on both databases: once closePool() has resolved, the next statement
// opens the pool again, configured as the first one was (its connection hook runs again). And a
// process that is shutting down is not kept alive by a late timer whose statement reopened the
// pool: it exits by itself (test/runtime/fixtures/late-statement.ts, run in a child process).
// On PostgreSQL that holds because the runtime passes pg `allowExitOnIdle: true` by default: with
// it set to false, the same script stays up until pg's idleTimeoutMillis closes the connection.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createScope } from '../../src/runtime/runtime.ts';
import { createMysqlTestDatabase } from '../support/mariadb.ts';
import { createTestDatabase } from '../support/postgres.ts';
import {
  kinds,
  mysqlSessions,
  mysqlSkipReason,
  type Opened,
  openMysql,
  openPostgres,
  waitFor,
} from './databases.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/late-statement.ts', import.meta.url));

/** "Exits by itself within ~2 s" of its last statement. */
const EXIT_BOUND = 2000;

async function serverPids(url: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    );
    return rows.map((row) => row.pid);
  } finally {
    await client.end();
  }
}

describe('closePool() then a statement: the pool opens again', () => {
  for (const kind of kinds) {
    test(`${kind.name}: stats go from 0 to 1, and the new connection is set up as the first was`, async () => {
      let hooked = 0;
      const onConnect = () => {
        hooked++;
      };
      const opened: Opened =
        kind.database === 'sqlite'
          ? await kind.open({ onConnect, pragmas: { cache_size: -4000 } })
          : kind.database === 'mysql'
            ? await openMysql({ onConnect, charset: 'LATIN1_SWEDISH_CI' })
            : await openPostgres({ onConnect, application_name: 'cdh-reopen' });
      const { db, url, mysqlUrl } = opened;
      // A setting given in the options, read on the connection that runs the statement.
      const SETTING = {
        sqlite: 'SELECT cache_size AS setting FROM pragma_cache_size()',
        postgres: "SELECT current_setting('application_name') AS setting",
        mysql: 'SELECT @@collation_connection AS setting',
      }[kind.database];
      const expected = { sqlite: -4000, postgres: 'cdh-reopen', mysql: 'latin1_swedish_ci' }[
        kind.database
      ];
      const backend = 'SELECT pg_backend_pid() AS pid';
      try {
        assert.deepEqual(await db.get(SETTING), { setting: expected });
        const firstPid = url ? (await db.get<{ pid: number }>(backend))!.pid : undefined;
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
        assert.equal(hooked, 1);

        await db.closePool();
        assert.deepEqual(db.stats(), { total: 0, idle: 0, inUse: 0, waiting: 0 });
        if (url) await waitFor(async () => (await serverPids(url)).length === 0);
        if (mysqlUrl) await waitFor(async () => (await mysqlSessions(mysqlUrl)).length === 0);

        assert.deepEqual(await db.get(SETTING), { setting: expected });
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
        assert.equal(hooked, 2, 'the hook ran on the new connection');
        if (url) {
          const pid = (await db.get<{ pid: number }>(backend))!.pid;
          assert.notEqual(pid, firstPid);
          assert.deepEqual(await serverPids(url), [pid]);
        }
        if (mysqlUrl) {
          const { id } = (await db.get<{ id: number }>('SELECT CONNECTION_ID() AS id'))!;
          assert.deepEqual(await mysqlSessions(mysqlUrl), [id]);
        }
        // Requests and transactions work on the reopened pool.
        const scope = createScope(db);
        await scope.run(() => db.atomic(() => db.get('SELECT 1 AS one')));
        await scope.release();
        assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
      } finally {
        await opened.cleanup();
      }
    });
  }
});

interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** From the line saying the late statement is done to the process's exit. */
  exitAfterLateMillis: number | undefined;
  /** True when the test had to kill it. */
  killed: boolean;
}

/** Runs the fixture with `env`; kills it after `limitMillis` if it has not exited by then. */
function runLateStatement(env: Record<string, string>, limitMillis: number): Promise<ChildRun> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.NODE_TEST_CONTEXT; // the script is not a test file of this runner
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
    cwd: repoRoot,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let lateAt: number | undefined;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (lateAt === undefined && stdout.includes('late statement done')) lateAt = performance.now();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  let killed = false;
  const limit = setTimeout(() => {
    killed = true;
    child.kill('SIGKILL');
  }, limitMillis);
  return new Promise((resolve, reject) => {
    let exitedAt = 0;
    child.on('error', (error) => {
      clearTimeout(limit);
      reject(error);
    });
    child.on('exit', () => {
      exitedAt = performance.now();
      clearTimeout(limit);
    });
    // 'close': the exit, and all of its output read.
    child.on('close', (code, signal) => {
      resolve({
        code,
        signal,
        stdout,
        stderr,
        exitAfterLateMillis: lateAt === undefined ? undefined : exitedAt - lateAt,
        killed,
      });
    });
  });
}

/** The fixture ran to its end: the late statements reopened the pool and were answered. */
/** The late statement ran, and the process exited by itself soon after it. */
function assertExitedPromptly(t: TestContext, run: ChildRun): void {
  assertLateStatementRan(run);
  t.diagnostic(`exited ${Math.round(run.exitAfterLateMillis!)} ms after its last statement`);
  assert.ok(
    run.exitAfterLateMillis! < EXIT_BOUND,
    `exited ${run.exitAfterLateMillis} ms after its last statement`,
  );
}

function assertLateStatementRan(run: ChildRun): void {
  assert.equal(run.killed, false, `still running at the limit\n${run.stdout}\n${run.stderr}`);
  assert.equal(run.code, 0, `exit ${run.code ?? run.signal}\n${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /^first statement \{"one":1\}$/m);
  assert.match(run.stdout, /^pool closed \{"total":0,"idle":0,"inUse":0,"waiting":0\}$/m);
  const late = /^late statement done (.*)$/m.exec(run.stdout);
  assert.ok(late, run.stdout);
  assert.deepEqual(JSON.parse(late[1]!), {
    row: { two: 2 },
    scoped: { three: 3 },
    stats: { total: 1, idle: 1, inUse: 0, waiting: 0 }, // reopened, the connection idle
  });
}

describe('a late timer does not keep a shutting-down process alive', () => {
  test('sqlite: after closePool(), a late statement reopens the pool and the process still exits by itself', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'cdh-late-'));
    try {
      const run = await runLateStatement(
        { CDH_KIND: 'sqlite', CDH_SQLITE_PATH: join(dir, 'app.db') },
        20_000,
      );
      assertExitedPromptly(t, run);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('postgres: the same, with the options index sets (allowExitOnIdle left at its default)', async (t) => {
    const database = await createTestDatabase();
    try {
      const run = await runLateStatement(
        { CDH_KIND: 'postgres', DATABASE_URL: database.url },
        20_000,
      );
      assertExitedPromptly(t, run);
    } finally {
      await database.drop();
    }
  });

  test('mysql: the same, with the options index sets (idle sockets unref()ed)', {
    skip: mysqlSkipReason,
  }, async (t) => {
    const database = await createMysqlTestDatabase();
    try {
      const run = await runLateStatement({ CDH_KIND: 'mysql', DATABASE_URL: database.url }, 20_000);
      assertExitedPromptly(t, run);
    } finally {
      await database.drop();
    }
  });

  test('postgres: with allowExitOnIdle: false the idle connection keeps it up until idleTimeoutMillis', async (t) => {
    const idleTimeoutMillis = 3000;
    const database = await createTestDatabase();
    try {
      const run = await runLateStatement(
        {
          CDH_KIND: 'postgres',
          DATABASE_URL: database.url,
          CDH_OPTIONS: JSON.stringify({ allowExitOnIdle: false, idleTimeoutMillis }),
        },
        20_000,
      );
      assertLateStatementRan(run); // it did exit by itself, once pg closed the idle connection
      t.diagnostic(`exited ${Math.round(run.exitAfterLateMillis!)} ms after its last statement`);
      assert.ok(
        run.exitAfterLateMillis! >= idleTimeoutMillis - 500,
        `exited ${run.exitAfterLateMillis} ms after its last statement, before pg's idle timeout`,
      );
    } finally {
      await database.drop();
    }
  });
});
