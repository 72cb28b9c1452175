// End to end, transactions through Express, Fastify, Hono and Koa on SQLite, PostgreSQL and MySQL
// (the test apps in apps/, TypeScript, type-checked): a route in the request's own transaction (the
// adapter's `atomic`, turned on per route) that writes twice, then succeeds, throws, answers a
// 5xx itself, opts out of the status rule, or loses its client; the onCommit hook it registers
// runs after the commit (its own connection sees both rows) and never after a rollback; and a
// SERIALIZABLE db.atomic() block hit by 10 concurrent conflicting requests, which all succeed
// through retries (PostgreSQL's serialization failures, MySQL's deadlocks 1213). After each, no
// connection is left in use, nor a session in a transaction on the server. MySQL runs where the
// run has a server (the newest Node line).
//
// E2E_FILTER=hono (a substring of the case names) runs some of the cases only.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { mysqlOff, mysqlSkipReason } from '../runtime/databases.ts';
import { createMysqlTestDatabase, mysqlAdmin, openTransactions } from '../support/mariadb.ts';
import { createTestDatabase, idleInTransaction } from '../support/postgres.ts';
import { installDependencies } from './support/deps.ts';
import { fetchReply, getJson, send } from './support/http.ts';
import {
  type Case,
  caseName,
  createProject,
  type RunningApp,
  startApp,
  typeCheck,
} from './support/project.ts';

const cases: Case[] = [];
const majors: Record<string, number | undefined> = { express: 5, koa: 3 };
for (const target of ['express', 'fastify', 'hono', 'koa'] as const) {
  for (const database of ['sqlite', 'postgres', 'mysql'] as const) {
    if (database === 'mysql' && mysqlOff) continue;
    cases.push({ target, database, variant: 'ts', major: majors[target] });
  }
}
const filter = process.env.E2E_FILTER;
const selected = filter ? cases.filter((c) => caseName(c).includes(filter)) : cases;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function assertReleased(app: RunningApp, what: string): Promise<void> {
  let stats: Record<string, number> = {};
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(25)) {
    stats = await getJson(`${app.url}/__stats`);
    if (stats.inUse! - stats.self! === 0 && stats.waiting === 0) return;
  }
  assert.fail(`${what}: connections still in use: ${JSON.stringify(stats)}\n${app.output()}`);
}

async function waitForEvent(
  app: RunningApp,
  tag: string,
  ready: (event: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  let event: Record<string, unknown> = {};
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(20)) {
    event = await getJson(`${app.url}/__events/${tag}`);
    if (ready(event)) return event;
  }
  assert.fail(`request ${tag} never got there: ${JSON.stringify(event)}\n${app.output()}`);
}

/** Rows of `tag` in marks, read from outside the app. */
async function marks(c: Case, env: Record<string, string>, tag: string): Promise<number> {
  if (c.database === 'mysql') {
    return mysqlAdmin(env.DATABASE_URL!, async (conn) => {
      const [rows] = await conn.query('SELECT tag FROM marks WHERE tag = ?', [tag]);
      return (rows as unknown[]).length;
    });
  }
  if (c.database === 'postgres') {
    const client = new pg.Client({ connectionString: env.DATABASE_URL });
    await client.connect();
    try {
      return (await client.query('SELECT tag FROM marks WHERE tag = $1', [tag])).rowCount ?? 0;
    } finally {
      await client.end();
    }
  }
  const file = new BetterSqlite3(env.SQLITE_PATH!, { readonly: true });
  try {
    return file.prepare('SELECT tag FROM marks WHERE tag = ?').all(tag).length;
  } finally {
    file.close();
  }
}

async function scenarios(c: Case, app: RunningApp, env: Record<string, string>): Promise<void> {
  const { url } = app;
  const settled = async (tag: string, what: string) => {
    await assertReleased(app, what);
    if (c.database === 'postgres') {
      assert.equal(await idleInTransaction(env.DATABASE_URL!), 0, `${what}: idle in transaction`);
    }
    if (c.database === 'mysql') {
      // A ROLLBACK on its way ends; a transaction really left open does not.
      let left = await openTransactions(env.DATABASE_URL!);
      for (const deadline = Date.now() + 3000; left.length > 0 && Date.now() < deadline; ) {
        left = await openTransactions(env.DATABASE_URL!);
      }
      assert.deepEqual(left, [], `${what}: a session left in a transaction`);
    }
    return waitForEvent(app, tag, (event) => event.done === true);
  };

  // Success: both rows committed, and the hook, run after the commit, sees them.
  const ok = await fetchReply(`${url}/tx/writes?tag=ok`);
  assert.equal(ok.status, 200, ok.body);
  assert.equal(await marks(c, env, 'ok'), 2);
  assert.equal((await waitForEvent(app, 'ok', (event) => 'hookSaw' in event)).hookSaw, 2);
  await settled('ok', 'success');

  // Failures roll both rows back and drop the hook: a thrown error, a 500 the handler answered
  // itself, a 422 after db.setRollback(true).
  for (const [fail, status] of [
    ['throw', 500],
    ['throw-422', 422],
    ['500', 500],
    ['4xx', 422],
  ] as const) {
    const tag = `fail-${fail}`;
    const reply = await fetchReply(`${url}/tx/writes?tag=${tag}&fail=${fail}`);
    assert.equal(reply.status, status, reply.body);
    const event = await settled(tag, `fail=${fail}`);
    assert.equal(event.after, 'ok', JSON.stringify(event));
    assert.equal(await marks(c, env, tag), 0, `fail=${fail} left its rows`);
    assert.equal(event.hooked, undefined, `fail=${fail} ran its onCommit hook`);
  }

  if (c.database === 'postgres') {
    // The handler succeeded, the commit fails: the client gets a 500 with a safe message (on
    // Fastify and Hono too, which write the status line before the body), never a success.
    const reply = await fetchReply(`${url}/tx/writes?tag=commit&fail=commit`);
    assert.equal(reply.status, 500, reply.body);
    assert.doesNotMatch(reply.body, /deferred|duplicate|constraint|unique/i);
    const event = await settled('commit', 'failed commit');
    assert.equal(event.after, 'ok', JSON.stringify(event));
    assert.equal(await marks(c, env, 'commit'), 0);
    assert.equal(event.hooked, undefined, 'a failed commit ran its onCommit hook');
    assert.match(app.output(), /could not commit/);
  }

  // db.setRollback(false): a 500 that keeps its rows.
  const kept = await fetchReply(`${url}/tx/writes?tag=kept&fail=keep`);
  assert.equal(kept.status, 500, kept.body);
  assert.equal(await marks(c, env, 'kept'), 2);
  assert.equal((await waitForEvent(app, 'kept', (event) => 'hookSaw' in event)).hookSaw, 2);

  // The client hangs up after the two writes: rolled back, hook dropped, the next statement of
  // the handler never runs on the released connection.
  const sleeping = waitForEvent(app, 'gone', (event) => event.sleeping === true);
  const gone = await send(`${url}/tx/writes?tag=gone&ms=1500`, { abortWhen: sleeping });
  assert.equal(gone, 'aborted');
  await assertReleased(app, 'client gone');
  assert.equal(await marks(c, env, 'gone'), 0, 'the client left, and the rows stayed');
  const goneEvent = await settled('gone', 'client gone');
  assert.equal(goneEvent.hooked, undefined, 'the hook ran after the client left');

  if (c.target === 'hono') {
    // Without @hono/node-server (Bun, Deno): committed before the Response is handed over.
    for (const [fail, status, rows] of [
      ['', 200, 2],
      ['throw', 500, 0],
      ['throw-422', 422, 0],
      ['500', 500, 0],
    ] as const) {
      const tag = `bare-${fail || 'ok'}`;
      const reply = await getJson<{ status: number }>(
        `${url}/__without-node-tx?tag=${tag}&fail=${fail}`,
      );
      assert.equal(reply.status, status, `without node, fail=${fail}`);
      assert.equal(await marks(c, env, tag), rows, `without node, fail=${fail}`);
    }
    await assertReleased(app, 'hono without @hono/node-server');
  }

  if (c.target === 'fastify') {
    // A body that fails validation on a transactional route: 400, and the release goes on.
    const invalid = await fetchReply(`${url}/tx/validated`, { method: 'POST', json: { nom: 1 } });
    assert.equal(invalid.status, 400, invalid.body);
    const valid = await fetchReply(`${url}/tx/validated`, { method: 'POST', json: { name: 'Tx' } });
    assert.equal(valid.status, 201, valid.body);
    await assertReleased(app, 'validation failure');
  }

  // SERIALIZABLE read-then-write from 10 concurrent requests: all succeed, the count is right.
  const replies = await Promise.all(
    Array.from({ length: 10 }, () =>
      getJson<{ attempt: number }>(`${url}/increment?name=c&batch=10`),
    ),
  );
  assert.equal((await getJson<{ n: number }>(`${url}/counter/c`)).n, 10);
  const attempts = replies.map((reply) => reply.attempt);
  if (c.database !== 'sqlite') {
    // PostgreSQL: serialization failures; MySQL: the shared locks SERIALIZABLE reads take make
    // the writes deadlock (1213), and InnoDB rolls back all but one.
    assert.ok(Math.max(...attempts) > 1, `no request was retried: ${attempts}`);
  } else {
    assert.deepEqual(attempts, Array(10).fill(1), 'SQLite writers take turns: no conflicts');
  }
  await assertReleased(app, 'serializable retries');
}

async function runCase(c: Case): Promise<void> {
  const postgres = c.database === 'postgres' ? await createTestDatabase() : undefined;
  const mysql = c.database === 'mysql' ? await createMysqlTestDatabase() : undefined;
  const project = await createProject(c);
  let passed = false;
  try {
    const errors = await typeCheck(project);
    assert.equal(errors, undefined, `tsc --strict --noEmit:\n${errors}`);
    const server = postgres ?? mysql;
    const env: Record<string, string> = server
      ? { DATABASE_URL: server.url }
      : { SQLITE_PATH: join(project.dir, 'app.db') };
    const app = await startApp(project, 'test-app', env);
    try {
      await scenarios(c, app, env);
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

describe('transactions through the real frameworks', { concurrency: 2 }, () => {
  for (const c of selected) {
    const skip = c.database === 'mysql' ? mysqlSkipReason : undefined;
    test(caseName(c), { skip }, () => runCase(c));
  }
});
