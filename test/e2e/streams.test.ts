// End to end, db.stream() through Express, Fastify and Hono on SQLite and PostgreSQL (and
// MySQL where the run has a server; MariaDB's Sequence engine makes its rows): a route pipes a
// 1,000,000-row stream to the response, and the client hangs up after the first rows. While the
// stream is open the server runs its query (pg_stat_activity, MySQL's process list) and the
// SQLite WAL cannot be checkpointed; once the client has gone, the connection is back in the
// pool (inUse 0), no query is left on the server and a full checkpoint (TRUNCATE) succeeds. A
// short stream read to the end gets every row. The rows come from a series the database makes,
// not from a table. Each case prints how long the release took after the hang-up.
//
// E2E_FILTER=hono (a substring of the case names) runs some of the cases only.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { mysqlOff } from '../runtime/databases.ts';
import { createMysqlTestDatabase, mysqlAdmin } from '../support/mariadb.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { installDependencies } from './support/deps.ts';
import { fetchReply, getJson } from './support/http.ts';
import {
  type Case,
  caseName,
  createProject,
  type RunningApp,
  startApp,
  typeCheck,
} from './support/project.ts';

const cases: Case[] = [];
for (const target of ['express', 'fastify', 'hono'] as const) {
  for (const database of ['sqlite', 'postgres', 'mysql'] as const) {
    if (database === 'mysql' && mysqlOff) continue;
    cases.push({ target, database, variant: 'ts', major: target === 'express' ? 5 : undefined });
  }
}
const filter = process.env.E2E_FILTER;
const selected = filter ? cases.filter((c) => caseName(c).includes(filter)) : cases;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls the app's pool until no connection is in use; how long that took. */
async function released(app: RunningApp, what: string): Promise<number> {
  const start = performance.now();
  let stats: Record<string, number> = {};
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(5)) {
    stats = await getJson(`${app.url}/__stats`);
    if (stats.inUse! - stats.self! === 0 && stats.waiting === 0) return performance.now() - start;
  }
  assert.fail(`${what}: connections still in use: ${JSON.stringify(stats)}\n${app.output()}`);
}

/** The queries the server still runs for the app's database, seen from a connection of its own. */
async function serverQueries(c: Case, env: Record<string, string>): Promise<string[]> {
  if (c.database === 'postgres') {
    const client = new pg.Client({ connectionString: env.DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query<{ query: string }>(
        "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'",
      );
      return rows.map((row) => row.query);
    } finally {
      await client.end();
    }
  }
  if (c.database === 'mysql') {
    return mysqlAdmin(env.DATABASE_URL!, async (conn) => {
      const [rows] = await conn.query(
        "SELECT INFO AS query FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND <> 'Sleep'",
      );
      return (rows as Array<{ query: string }>).map((row) => row.query);
    });
  }
  return [];
}

/**
 * Waits until the server runs no query for the app's database. PostgreSQL's cursor is closed
 * before the connection goes back; MySQL's query ends once its next rows meet the closed
 * socket, a moment later. The deadline only turns a hang into a failure.
 */
async function noQueryLeft(c: Case, env: Record<string, string>): Promise<void> {
  let left: string[] = [];
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(20)) {
    left = await serverQueries(c, env);
    if (left.length === 0) return;
  }
  assert.fail(`a query is left on the server: ${JSON.stringify(left)}`);
}

/** SQLite: whether a full checkpoint (TRUNCATE) succeeds now, without waiting for readers. */
function checkpoints(env: Record<string, string>): boolean {
  const file = new BetterSqlite3(env.SQLITE_PATH!, { timeout: 0 });
  try {
    const [result] = file.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    return result!.busy === 0;
  } finally {
    file.close();
  }
}

/** A write from outside, so that the WAL has frames an open reader keeps from the file. */
function writeToWal(env: Record<string, string>): void {
  const file = new BetterSqlite3(env.SQLITE_PATH!);
  try {
    file.prepare('INSERT INTO marks (tag) VALUES (?)').run('wal');
  } finally {
    file.close();
  }
}

/**
 * GET `url`, reading until `lines` lines have come, then stops reading (the server's writes
 * back up) and resolves with what came and a function that hangs up.
 */
function readThenPause(
  url: string,
  lines: number,
): Promise<{ status: number; text: string; hangUp: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false });
    req.once('error', reject);
    req.once('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      const onData = (chunk: string) => {
        text += chunk;
        if (text.split('\n').length > lines) {
          res.pause();
          res.off('data', onData);
          resolve({ status: res.statusCode ?? 0, text, hangUp: () => req.destroy() });
        }
      };
      res.on('data', onData);
      res.once('end', () => reject(new Error(`the stream ended after ${text.length} bytes`)));
    });
    req.end();
  });
}

async function waitForEvent(app: RunningApp, tag: string): Promise<Record<string, unknown>> {
  let event: Record<string, unknown> = {};
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(20)) {
    event = await getJson(`${app.url}/__events/${tag}`);
    if (event.done === true) return event;
  }
  assert.fail(`the stream ${tag} never ended: ${JSON.stringify(event)}\n${app.output()}`);
}

async function scenarios(c: Case, app: RunningApp, env: Record<string, string>): Promise<number> {
  // A short stream, read to the end: every row, in order, then the connection goes back.
  const short = await fetchReply(`${app.url}/rows?tag=short&count=1000`);
  assert.equal(short.status, 200, short.body);
  const numbers = short.body
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line).n as number);
  assert.deepEqual(
    numbers,
    Array.from({ length: 1000 }, (_, i) => i + 1),
  );
  assert.equal((await waitForEvent(app, 'short')).end, 'complete');
  await released(app, 'a stream read to the end');

  // A million rows, and a client that hangs up after the first ones.
  if (c.database === 'sqlite') writeToWal(env);
  const reply = await readThenPause(`${app.url}/rows?tag=big&count=1000000`, 10);
  assert.equal(reply.status, 200);
  assert.match(reply.text, /^\{"n":1\}\n\{"n":2\}\n/);
  const open = await getJson<Record<string, unknown>>(`${app.url}/__events/big`);
  assert.equal(open.done, undefined, 'the stream is still open');
  if (c.database === 'sqlite') {
    assert.equal(checkpoints(env), false, 'the open stream should keep the WAL');
  } else {
    assert.equal((await serverQueries(c, env)).length, 1, 'the query should run on the server');
  }
  reply.hangUp();
  const millis = await released(app, 'a client that hung up mid-stream');
  const event = await waitForEvent(app, 'big');
  assert.notEqual(event.end, 'complete', JSON.stringify(event));
  assert.ok(Number(event.sent) < 1_000_000, JSON.stringify(event));
  if (c.database === 'postgres') {
    assert.deepEqual(await serverQueries(c, env), [], 'the cursor was left open');
  }
  await noQueryLeft(c, env);
  if (c.database === 'sqlite') assert.equal(checkpoints(env), true, 'the WAL is still pinned');

  // The pool goes on serving.
  assert.equal((await fetchReply(`${app.url}/rows?tag=after&count=3`)).status, 200);
  await released(app, 'after the hang-up');
  return millis;
}

async function runCase(c: Case, report: (message: string) => void): Promise<void> {
  const postgres = c.database === 'postgres' ? await createTestDatabase() : undefined;
  const mysql = c.database === 'mysql' ? await createMysqlTestDatabase() : undefined;
  const project = await createProject(c);
  let passed = false;
  try {
    const errors = await typeCheck(project);
    assert.equal(errors, undefined, `tsc --strict --noEmit:\n${errors}`);
    const url = postgres?.url ?? mysql?.url;
    const env: Record<string, string> = url
      ? { DATABASE_URL: url }
      : { SQLITE_PATH: join(project.dir, 'app.db') };
    const app = await startApp(project, 'test-app', env);
    try {
      const millis = await scenarios(c, app, env);
      report(`${caseName(c)}: released ${millis.toFixed(0)} ms after the client hung up`);
    } finally {
      const code = await app.stop();
      assert.equal(code, 0, `the app did not shut down cleanly:\n${app.output()}`);
    }
    assert.doesNotMatch(app.output(), /could not return/);
    passed = true;
  } finally {
    if (passed || !process.env.E2E_KEEP) project.remove();
    await postgres?.drop();
    await mysql?.drop();
  }
}

before(() => {
  installDependencies();
});

describe('db.stream() through the real frameworks', { concurrency: 2 }, () => {
  for (const c of selected) test(caseName(c), (t) => runCase(c, (m) => t.diagnostic(m)));
});
