// End to end: for every target × database × language (TypeScript, JavaScript ESM, JavaScript
// CommonJS), and Express 4 as well as 5, generate the files into a fresh project, type-check the
// TypeScript, run a test app on the real framework from npm, and drive it over real HTTP:
// success, errors, 404, a client that hangs up mid-handler and mid-stream, streamed responses,
// concurrent requests, pool exhaustion and shutdown. After each scenario the pool must have no
// connection in use and PostgreSQL no session left idle in a transaction; concurrent requests
// must never have shared a connection (PostgreSQL's backend pid, MySQL's connection id; on
// SQLite the number the test app gives each connection it opens). MySQL runs every target in
// TypeScript, and Express in JavaScript too (its runtime file converted), on the newest Node
// line only (TEST_MYSQL=off on the others: mysql2 is plain JavaScript). At shutdown the adapter must have given back every
// connection before the app closes the pool, and must not have closed it. The sample app for an
// empty directory is started too.
//
// Before the newest Node line (TEST_NODE_LINE, set by test/run.ts) only what differs by line
// runs: every target on SQLite, through better-sqlite3 (built for that line) and node:sqlite, in
// every language on the oldest release (how it loads them), in TypeScript on the lines between
// (how they serve requests). PostgreSQL and MySQL run the same JavaScript on every line, and the
// type check and the formatting do not depend on it.
//
// E2E_FILTER=hono (a substring of the case names) runs some of the cases only.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import * as prettier from 'prettier';
import WebSocket from 'ws';
import type { OutputStyle } from '../../src/cli/language.ts';
import { type GeneratedFile, renderAppFile, renderGeneratedFiles } from '../../src/cli/render.ts';
import { type DatabaseId, databaseIds, type TargetId, targetIds } from '../../src/cli/targets.ts';
import { mysqlOff, mysqlSkipReason, waitFor } from '../runtime/databases.ts';
import { createMysqlTestDatabase, mysqlAdmin, openTransactions } from '../support/mariadb.ts';
import { createTestDatabase, idleInTransaction, passwordRole } from '../support/postgres.ts';
import { installDependencies } from './support/deps.ts';
import { fetchReply, getJson, pipelineThenHangUp, send } from './support/http.ts';
import {
  type Case,
  caseName,
  createProject,
  type Project,
  type RunningApp,
  startApp,
  typeCheck,
  type Variant,
} from './support/project.ts';

const variants: Variant[] = ['ts', 'js-esm', 'js-cjs'];
const cases: Case[] = [];
const majors: Partial<Record<TargetId, number[]>> = { express: [5, 4], koa: [3, 2] };
const platforms: Partial<Record<TargetId, Case['platform'][]>> = { nestjs: ['express', 'fastify'] };
for (const target of targetIds) {
  for (const major of majors[target] ?? [undefined]) {
    for (const platform of platforms[target] ?? [undefined]) {
      for (const database of databaseIds) {
        for (const variant of variants) {
          const c: Case = { target, database, variant, major, platform };
          if (database !== 'mysql' || mysqlCase(c)) cases.push(c);
        }
      }
    }
  }
}
// SQLite on Node's built-in driver: every target, in TypeScript and in JavaScript ESM.
for (const target of targetIds) {
  const [major, platform] = [majors[target]?.[0], platforms[target]?.[0]];
  for (const variant of ['ts', 'js-esm'] as const) {
    cases.push({ target, database: 'sqlite', driver: 'node:sqlite', variant, major, platform });
  }
}
for (const recipe of ['h3', 'hapi', 'restify'] as const) {
  for (const database of databaseIds.filter((id) => id !== 'mysql')) {
    cases.push({ target: 'hooks', database, variant: 'js-esm', recipe });
  }
}
/** MySQL: every target in TypeScript, the newest majors; Express 5 in JavaScript as well. */
function mysqlCase(c: Case): boolean {
  if (mysqlOff) return false;
  if (c.major !== undefined && c.major !== majors[c.target]![0]) return false;
  return c.variant === 'ts' || (c.target === 'express' && c.major === 5);
}

const nodeLine = process.env.TEST_NODE_LINE as 'oldest' | 'between' | undefined;
const filter = process.env.E2E_FILTER;
const selected = cases.filter(
  (c) =>
    (!filter || caseName(c).includes(filter)) &&
    (!nodeLine || c.database === 'sqlite') &&
    (nodeLine !== 'between' || c.variant === 'ts' || c.recipe !== undefined),
);

interface Stats {
  total: number;
  idle: number;
  inUse: number;
  waiting: number;
  /** 1 when the /__stats request itself holds a connection. */
  self: number;
}

interface SlowResult {
  tag: string;
  pid: number | null;
  lastPid: number | null;
  start: number;
  end: number;
  inScope: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const secret = 'e2e-password-never-printed';

/** Stops an app; it must exit 0 and never have printed the database password. */
async function stopApp(app: RunningApp): Promise<void> {
  const code = await app.stop();
  assert.equal(code, 0, `the app did not shut down cleanly:\n${app.output()}`);
  assert.ok(!app.output().includes(secret), `the app printed the password:\n${app.output()}`);
  assert.doesNotMatch(app.output(), /could not return the connection/);
}

/** Waits until no request holds a connection; fails with the last stats otherwise. */
async function assertReleased(app: RunningApp, what: string): Promise<void> {
  let stats: Stats | undefined;
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(25)) {
    stats = await getJson<Stats>(`${app.url}/__stats`);
    if (stats.inUse - stats.self === 0 && stats.waiting === 0) return;
  }
  assert.fail(`${what}: connections still in use: ${JSON.stringify(stats)}\n${app.output()}`);
}

/** Polls /__events/<tag> until `ready` (by default: the request has finished). */
async function waitForEvent(
  app: RunningApp,
  tag: string,
  ready: (event: Record<string, unknown>) => boolean = (event) => event.done === true,
): Promise<Record<string, unknown>> {
  let event: Record<string, unknown> = {};
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(20)) {
    event = await getJson(`${app.url}/__events/${tag}`);
    if (ready(event)) return event;
  }
  assert.fail(`request ${tag} never got there: ${JSON.stringify(event)}\n${app.output()}`);
}

async function marks(c: Case, env: Record<string, string>, tag: string): Promise<number> {
  if (c.database === 'mysql') {
    return mysqlAdmin(rootUrls.get(env.DATABASE_URL!)!, async (conn) => {
      const [rows] = await conn.query('SELECT tag FROM marks WHERE tag = ?', [tag]);
      return (rows as unknown[]).length;
    });
  }
  if (c.database === 'postgres') {
    const client = new pg.Client({ connectionString: env.DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT tag FROM marks WHERE tag = $1', [tag]);
      return rows.length;
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

async function checkDatabase(c: Case, env: Record<string, string>, what: string): Promise<void> {
  if (c.database === 'mysql') {
    // Polled as assertReleased() polls: a transaction really left open never ends, one whose
    // ROLLBACK is on its way does.
    let left = await openTransactions(rootUrls.get(env.DATABASE_URL!)!);
    for (const deadline = Date.now() + 3000; left.length > 0 && Date.now() < deadline; ) {
      left = await openTransactions(rootUrls.get(env.DATABASE_URL!)!);
    }
    assert.deepEqual(left, [], `${what}: a session left in a transaction`);
    return;
  }
  if (c.database !== 'postgres') return;
  assert.equal(await idleInTransaction(env.DATABASE_URL!), 0, `${what}: idle in transaction`);
}

/**
 * The connection a statement ran on: PostgreSQL's backend pid, or on SQLite the number the test
 * app gives each connection it opens (connection_id()); never missing, or the checks comparing
 * them would compare nothing.
 */
function assertConnection(pid: unknown, what: string): asserts pid is number {
  assert.equal(typeof pid, 'number', `${what}: no connection identity (${String(pid)})`);
}

/** Two requests whose handlers ran at the same time must have had different backends. */
function assertNoSharedBackend(results: SlowResult[]): void {
  let overlaps = 0;
  for (const a of results) {
    assertConnection(a.pid, `request ${a.tag}`);
    assert.equal(a.pid, a.lastPid, `request ${a.tag} changed connection mid-request`);
    for (const b of results) {
      if (a === b) continue;
      const overlap = a.start < b.end && b.start < a.end;
      if (overlap) overlaps++;
      if (overlap) assert.notEqual(a.pid, b.pid, `${a.tag} and ${b.tag} shared backend ${a.pid}`);
    }
  }
  assert.ok(overlaps > 0, 'no two requests ran at the same time: nothing was compared');
}

async function sampleApp(project: Project, env: Record<string, string>): Promise<void> {
  const app = await startApp(project, 'app', env);
  try {
    assert.match(app.output(), /Listening on http:\/\/127\.0\.0\.1:\d+/);
    const found = await fetchReply(`${app.url}/users/1`);
    assert.equal(found.status, 200, found.body);
    assert.deepEqual(JSON.parse(found.body), { id: 1, name: 'Ada Lovelace' });
    const missing = await fetchReply(`${app.url}/users/999`);
    assert.equal(missing.status, 404, missing.body);
  } finally {
    await stopApp(app);
  }
  if (env.SQLITE_PATH) {
    // The generated db/index puts the file in WAL mode (README: readers and the writer at once).
    const file = new BetterSqlite3(env.SQLITE_PATH, { readonly: true });
    try {
      assert.equal(file.pragma('journal_mode', { simple: true }), 'wal');
    } finally {
      file.close();
    }
  }
}

async function scenarios(c: Case, app: RunningApp, env: Record<string, string>): Promise<void> {
  const url = app.url;

  // Success, 404 from the handler, 404 with no route, a body parsed before the handler.
  const user = await fetchReply(`${url}/users/1`);
  assert.equal(user.status, 200, user.body);
  assert.equal(JSON.parse(user.body).id, 1);
  assert.equal((await fetchReply(`${url}/users/999`)).status, 404);
  assert.equal((await fetchReply(`${url}/no/such/route`)).status, 404);
  const created = await fetchReply(`${url}/users`, { method: 'POST', json: { name: 'Grace' } });
  assert.equal(created.status, 201, created.body);
  assert.equal(JSON.parse(created.body).inScope, true, 'the handler ran outside the request scope');
  await assertReleased(app, 'success and 404');

  // Errors thrown synchronously and after an await (a callback error on Express 4).
  assert.equal((await fetchReply(`${url}/boom/sync`)).status, 500);
  assert.equal((await fetchReply(`${url}/boom/async`)).status, 500);
  await assertReleased(app, 'errors');
  await checkDatabase(c, env, 'errors');

  // A streamed response, produced from the database while it is sent.
  const streamed = await fetchReply(`${url}/stream?tag=stream&chunks=5&delay=10`);
  assert.equal(streamed.status, 200, streamed.body);
  assert.equal(streamed.body.trim().split('\n').length, 5);
  const stream = await waitForEvent(app, 'stream');
  assert.equal(stream.end, 'complete');
  assert.deepEqual(stream.inScope, [true, true, true, true, true], 'stream read outside the scope');
  for (const pid of stream.pids as unknown[]) assertConnection(pid, 'stream');
  assert.equal(new Set(stream.pids as unknown[]).size, 1, 'the stream changed connection');
  await assertReleased(app, 'streamed response');

  // The client hangs up in the middle of a stream.
  assert.equal(
    await send(`${url}/stream?tag=cut&chunks=200&delay=20`, { abortAfterFirstChunk: true }),
    'aborted',
  );
  const cut = await waitForEvent(app, 'cut');
  assert.ok(Number(cut.sent) < 200, 'the stream went on after the client left');
  await assertReleased(app, 'client gone mid-stream');
  await checkDatabase(c, env, 'client gone mid-stream');

  // The client hangs up while the handler awaits, inside a transaction: release waits for the
  // statement in flight, rolls back, and the handler's next statement is refused.
  const sleeping = waitForEvent(app, 'gone', (event) => event.sleeping === true);
  assert.equal(await send(`${url}/slow?tag=gone&ms=1000&tx=1`, { abortWhen: sleeping }), 'aborted');
  const gone = await waitForEvent(app, 'gone');
  assert.equal(gone.inScope, true);
  assert.equal(gone.after, 'ScopeReleasedError', JSON.stringify(gone));
  await assertReleased(app, 'client gone mid-handler');
  await checkDatabase(c, env, 'client gone mid-handler');
  assert.equal(await marks(c, env, 'gone'), 0, 'the aborted transaction was not rolled back');

  if (c.target === 'hono' && !c.recipe) {
    // Hono without a Node response to watch: the body stream decides.
    await getJson(`${url}/__without-node?tag=bare`);
    const bare = await waitForEvent(app, 'bare');
    assert.equal(bare.end, 'complete');
    assert.deepEqual(bare.inScope, [true, true, true], 'stream read outside the scope');
    await getJson(`${url}/__without-node?tag=bare-cut&cut=1`);
    const bareCut = await waitForEvent(app, 'bare-cut');
    assert.ok(Number(bareCut.sent) < 100, 'the stream went on after it was cancelled');
    await assertReleased(app, 'hono without @hono/node-server');
    const aborted = await getJson<{ before: number; after: number }>(`${url}/__without-node-abort`);
    assert.deepEqual(aborted, { before: 1, after: 0 }, 'an aborted signal kept the connection');
  }

  // Concurrent requests: each on its own connection for its whole duration.
  const results = await Promise.all(
    Array.from({ length: 6 }, (_, i) => getJson<SlowResult>(`${url}/slow?tag=c${i}&ms=250`)),
  );
  for (const result of results) assert.equal(result.inScope, true);
  assertNoSharedBackend(results);
  await assertReleased(app, 'concurrent requests');
  await checkDatabase(c, env, 'concurrent requests');
}

/** Targets that are middleware, so an app can put an async middleware in front of them. */
const middlewareTargets: TargetId[] = ['express', 'fastify', 'koa', 'hono', 'nestjs'];

/**
 * The app as real apps are built and hostile clients behave: a route with no statement, clients
 * that leave while a middleware in front of the adapter awaits, pipelined requests on a socket
 * closed before the answers, work that outlives the response, body events, and (Express) an
 * async handler with no catch whose client leaves.
 */
async function realApps(c: Case, app: RunningApp, env: Record<string, string>): Promise<void> {
  const url = app.url;

  // Lazy checkout: a request that never queries holds no connection while it runs. (The hooks
  // target stays explicit: beforeRequest() connects.)
  if (c.target !== 'hooks') {
    const idle = fetchReply(`${url}/nodb?tag=nodb&ms=400`);
    await waitForEvent(app, 'nodb', (event) => event.sleeping === true);
    const during = await getJson<Stats>(`${url}/__stats`);
    assert.equal(during.inUse - during.self, 0, 'a request that never queried took a connection');
    assert.equal((await idle).status, 200);
  }

  if (middlewareTargets.includes(c.target)) {
    for (let i = 0; i < 3; i++) {
      const tag = `early${i}`;
      const waiting = waitForEvent(app, tag, (event) => event.waiting === true);
      const path = `/slow?tag=${tag}-handler&ms=50&gate=${tag}&gateMs=300`;
      assert.equal(await send(`${url}${path}`, { abortWhen: waiting }), 'aborted');
    }
    await sleep(400); // the middleware in front finishes; the adapter runs for a client gone
    await assertReleased(app, 'clients gone while a middleware in front awaited');
    await checkDatabase(c, env, 'clients gone while a middleware in front awaited');
  }

  // Three pipelined requests on one socket, closed before any answer: the two queued behind
  // the first never get the socket, so their responses emit neither 'finish' nor 'close'.
  const first = waitForEvent(app, 'pipe0', (event) => event.sleeping === true);
  const paths = [0, 1, 2].map((i) => `/slow?tag=pipe${i}&ms=300`);
  await pipelineThenHangUp(url, paths, first);
  await sleep(500);
  await assertReleased(app, 'pipelined requests, then a hang-up');
  await checkDatabase(c, env, 'pipelined requests, then a hang-up');

  // Work that outlives the response runs in db.detached(), on a connection of its own.
  await getJson(`${url}/detached?tag=background`);
  const background = await waitForEvent(app, 'background');
  assert.equal(background.after, 'ok', JSON.stringify(background));
  assertConnection(background.pid, 'detached work');
  await assertReleased(app, 'detached work');

  if (c.target === 'node-http') {
    // An error after the headers went out: no 500 can follow a 200, so the connection is cut,
    // and the client sees a broken response, not a complete one.
    await assert.rejects(
      send(`${url}/boom/after-headers`),
      /aborted|ECONNRESET|socket hang up/,
      'a response that failed after its headers ended as if complete',
    );
    await assertReleased(app, 'error after the headers');
  }

  if (c.target === 'fastify') {
    // Validation and preHandler hooks run in the scope, after the body was read: the hook's
    // statement and the handler's use one connection, and the body arrives validated.
    const posted = await fetchReply(`${url}/prehandler`, {
      method: 'POST',
      json: { n: '7' },
      bodyLater: true,
    });
    assert.equal(posted.status, 200, posted.body);
    const reply = JSON.parse(posted.body) as Record<string, unknown>;
    assert.equal(reply.n, 7, 'the body was not validated');
    assert.equal(reply.validatedInScope, true, 'validation ran outside the scope');
    assert.equal(reply.heldOnEntry, true, "the preHandler's connection was not the request's");
    assertConnection(reply.before, 'preHandler');
    assert.equal(reply.before, reply.inHandler, 'the preHandler hook ran on another connection');
    await assertReleased(app, 'preHandler');
  }

  if (c.target === 'fetch') {
    // What the server passes after the request (env, and a Workers-style ctx) reaches the handler.
    const passed = await getJson<{ env: string[]; ctx: unknown }>(`${url}/__env`);
    assert.deepEqual(passed, { env: ['incoming', 'outgoing'], ctx: 'ctx-from-the-server' });
  }

  if (c.target === 'koa' || c.target === 'fastify') {
    // Clients that left (mid-handler, above; before the adapter ran) raised ScopeReleasedError
    // in handlers; Koa and Fastify do not log it as a server error.
    assert.doesNotMatch(app.output(), /ScopeReleasedError/, 'a client that left was logged');
    assert.match(app.output(), /boom \((sync|async)\)/, 'the app logs nothing: the check is void');
  }

  if (c.target === 'node-http' || c.target === 'hooks') {
    // A statement in the body's 'end' listener runs on the request's connection.
    const reply = await fetchReply(`${url}/body-events`, { method: 'POST', json: { name: 'x' } });
    assert.equal(reply.status, 200, reply.body);
    const body = JSON.parse(reply.body) as Record<string, unknown>;
    assert.equal(body.inScope, true, "the body's 'end' listener ran outside the request scope");
    assertConnection(body.before, 'before the body');
    assert.equal(body.before, body.inEnd, 'the end listener used another connection');
    await assertReleased(app, 'body events');
  }

  if (c.target === 'hono') {
    // WebSocket handlers run outside the upgrade request's (finished) scope.
    const socket = new WebSocket(`${url.replace('http', 'ws')}/ws`);
    const messages: unknown[] = [];
    socket.on('message', (data: Buffer) => messages.push(JSON.parse(data.toString())));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    for (const deadline = Date.now() + 15_000; messages.length < 1 && Date.now() < deadline; ) {
      await sleep(20);
    }
    socket.send('hello');
    for (const deadline = Date.now() + 15_000; messages.length < 2 && Date.now() < deadline; ) {
      await sleep(20);
    }
    socket.close();
    await closed;
    assert.deepEqual(messages, [{ open: 'ok' }, { message: 'ok' }]);
    await assertReleased(app, 'WebSocket');
  }

  if (c.target === 'express') {
    // No catch around the handler: on Express 4 the refused statement is an unhandled
    // rejection, and the process must survive it.
    const sleeping = waitForEvent(app, 'unguarded', (event) => event.sleeping === true);
    const path = '/unguarded/slow?tag=unguarded&ms=500';
    assert.equal(await send(`${url}${path}`, { abortWhen: sleeping }), 'aborted');
    const gone = await waitForEvent(app, 'unguarded');
    assert.equal(gone.after, 'ScopeReleasedError', JSON.stringify(gone));
    await sleep(100);
    const after = await fetchReply(`${url}/users/1`);
    assert.equal(after.status, 200, `the app did not survive a client leaving:\n${app.output()}`);
    // skipGoneClients() after the routes: nothing in the log for a client that left.
    assert.doesNotMatch(app.output(), /ScopeReleasedError/);
    await assertReleased(app, 'unguarded handler, client gone');
  }
}

/**
 * Long-lived responses on a pool of 2: two streams that give their connection back after their
 * first line (as server-sent events should) stay open while other requests are served.
 */
async function longLived(project: Project, env: Record<string, string>): Promise<void> {
  const app = await startApp(project, 'test-app', {
    ...env,
    E2E_POOL_MAX: '2',
    E2E_ACQUIRE_TIMEOUT_MS: '500',
  });
  try {
    let hangUp!: () => void;
    const hungUp = new Promise<void>((resolve) => {
      hangUp = resolve;
    });
    const streams = [0, 1].map((i) =>
      send(`${app.url}/stream?tag=sse${i}&chunks=200&delay=50&close=1`, { abortWhen: hungUp }),
    );
    for (const i of [0, 1]) {
      await waitForEvent(app, `sse${i}`, (event) => Number(event.sent) >= 2);
    }
    for (let i = 0; i < 4; i++) {
      const reply = await fetchReply(`${app.url}/users/1`);
      assert.equal(reply.status, 200, `with two streams open: ${reply.status} ${reply.body}`);
    }
    hangUp();
    assert.deepEqual(await Promise.all(streams), ['aborted', 'aborted']);
    await assertReleased(app, 'long-lived responses');
  } finally {
    await stopApp(app);
  }
}

/**
 * Registered twice (on the app and again on a router), with eager checkout on a pool of 1: the
 * second registration must step aside, not wait for a second connection.
 */
async function registeredTwice(project: Project, env: Record<string, string>): Promise<void> {
  const app = await startApp(project, 'test-app', {
    ...env,
    REGISTER_TWICE: '1',
    E2E_CHECKOUT: 'eager',
    E2E_POOL_MAX: '1',
    E2E_ACQUIRE_TIMEOUT_MS: '300',
  });
  try {
    for (let i = 0; i < 3; i++) {
      const reply = await fetchReply(`${app.url}/users/1`);
      assert.equal(reply.status, 200, `registered twice: ${reply.status} ${reply.body}`);
    }
    await assertReleased(app, 'registered twice');
  } finally {
    await stopApp(app);
  }
}

/**
 * PostgreSQL down, or a wrong password: the client gets a 503 that shows nothing of the server;
 * the log has the detail.
 */
async function unreachable(c: Case, project: Project, env: Record<string, string>): Promise<void> {
  const down = `${c.database === 'mysql' ? 'mysql' : 'postgres'}://app:${secret}@127.0.0.1:1/app`;
  // The test server asks this role for a password (test/support/postgres.ts); a server given by
  // DATABASE_URL refuses it as an unknown role. MySQL: the app's user, another password.
  const wrongPassword = new URL(env.DATABASE_URL!);
  if (c.database === 'postgres') wrongPassword.username = passwordRole;
  wrongPassword.password = `${secret}-wrong`;
  const failures = [
    { url: down, logged: /ECONNREFUSED/ },
    {
      url: wrongPassword.toString(),
      logged: /password authentication failed|does not exist|Access denied/,
    },
  ];
  for (const { url, logged } of failures) {
    // In production mode, as deployed: Express shows every error's stack to clients otherwise.
    const failing = { DATABASE_URL: url, E2E_SKIP_SETUP: '1', NODE_ENV: 'production' };
    const app = await startApp(project, 'test-app', failing);
    try {
      const reply = await fetchReply(`${app.url}/users/1`);
      assert.equal(reply.status, 503, reply.body);
      const internals = ['127.0.0.1', 'ECONNREFUSED', 'DATABASE_URL', 'runtime', passwordRole];
      for (const internal of [...internals, 'password', secret]) {
        assert.ok(!reply.body.includes(internal), `the client saw ${internal}: ${reply.body}`);
      }
      assert.match(await outputWith(app, logged), logged, 'the detail did not reach the log');
    } finally {
      await stopApp(app);
    }
  }
}

/**
 * The app's output once it holds `expected` (or after waitFor's deadline): the log comes through
 * a pipe, which the test may read after the response that followed it.
 */
async function outputWith(app: RunningApp, expected: string | RegExp): Promise<string> {
  const has = () =>
    typeof expected === 'string' ? app.output().includes(expected) : expected.test(app.output());
  await waitFor(has).catch(() => undefined);
  return app.output();
}

/**
 * A SQLite file that cannot be opened (its directory missing, or a file where the directory
 * should be): as for a server that is down, a 503 that shows nothing of the file, the detail in
 * the log.
 */
async function unopenable(project: Project): Promise<void> {
  writeFileSync(join(project.dir, 'not-a-dir'), '');
  for (const path of [
    join(project.dir, 'missing', 'app.db'),
    join(project.dir, 'not-a-dir', 'app.db'),
  ]) {
    const failing = { SQLITE_PATH: path, E2E_SKIP_SETUP: '1', NODE_ENV: 'production' };
    const app = await startApp(project, 'test-app', failing);
    try {
      const reply = await fetchReply(`${app.url}/users/1`);
      assert.equal(reply.status, 503, reply.body);
      for (const internal of ['SQLITE', 'unable to open', 'directory', 'app.db', project.dir]) {
        assert.ok(!reply.body.includes(internal), `the client saw ${internal}: ${reply.body}`);
      }
      const output = await outputWith(app, path);
      assert.ok(output.includes(path), `the log does not name the file:\n${output}`);
    } finally {
      await stopApp(app);
    }
  }
}

async function exhaustion(project: Project, env: Record<string, string>): Promise<void> {
  const app = await startApp(project, 'test-app', {
    ...env,
    E2E_POOL_MAX: '1',
    E2E_ACQUIRE_TIMEOUT_MS: '300',
  });
  try {
    const replies = await Promise.all(
      Array.from({ length: 3 }, (_, i) => fetchReply(`${app.url}/slow?tag=x${i}&ms=900`)),
    );
    const statuses = replies.map((reply) => reply.status).sort();
    assert.equal(statuses[0], 200, `statuses: ${statuses}`);
    assert.ok(statuses.includes(503), `no 503 when the pool was exhausted: ${statuses}`);
    for (const reply of replies.filter((r) => r.status === 503)) {
      assert.match(reply.body, /connection became free/, reply.body);
    }
    for (const reply of replies.filter((r) => r.status !== 503)) {
      assert.equal(reply.status, 200, reply.body);
    }
    await assertReleased(app, 'pool exhaustion');
  } finally {
    await stopApp(app);
  }
}

/**
 * NestJS with a catch-all exception filter of the app's own (CATCH_ALL=1), which comes before
 * the module's: an exhausted pool's error reaches it with status 503, and it answers 503.
 */
async function nestCatchAll(project: Project, env: Record<string, string>): Promise<void> {
  const app = await startApp(project, 'test-app', {
    ...env,
    CATCH_ALL: '1',
    E2E_POOL_MAX: '1',
    E2E_ACQUIRE_TIMEOUT_MS: '300',
  });
  try {
    const replies = await Promise.all(
      Array.from({ length: 3 }, (_, i) => fetchReply(`${app.url}/slow?tag=f${i}&ms=900`)),
    );
    const refused = replies.filter((reply) => reply.status !== 200);
    assert.ok(refused.length > 0, 'no request was refused');
    for (const reply of refused) {
      assert.equal(reply.status, 503, reply.body);
      assert.deepEqual(
        { ...JSON.parse(reply.body), message: undefined },
        { caughtBy: 'catch-all', status: 503, message: undefined },
        reply.body,
      );
    }
    await assertReleased(app, 'a catch-all filter');

    // A client that leaves mid-request: the refused statement's error reaches the filter with
    // status 499.
    const sleeping = waitForEvent(app, 'gone', (event) => event.sleeping === true);
    assert.equal(await send(`${app.url}/slow?tag=gone&ms=400`, { abortWhen: sleeping }), 'aborted');
    const gone = await waitForEvent(app, 'gone', (event) => event.after !== undefined);
    assert.equal(gone.after, 'ScopeReleasedError');
    let caught: Array<{ name: string; status: number }> = [];
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(20)) {
      caught = await getJson(`${app.url}/__caught`);
      if (caught.some((error) => error.name === 'ScopeReleasedError')) break;
    }
    assert.deepEqual(
      caught.filter((error) => error.name === 'ScopeReleasedError'),
      [{ name: 'ScopeReleasedError', status: 499 }],
    );
    await assertReleased(app, 'a client gone, with a catch-all filter');
  } finally {
    await stopApp(app);
  }
}

/** E2E_DEBUG=1 prints how long each phase of a case took. */
function phases(c: Case): (name: string) => void {
  let last = Date.now();
  return (name) => {
    if (!process.env.E2E_DEBUG) return;
    const now = Date.now();
    process.stderr.write(`${caseName(c)}: ${name} ${now - last} ms\n`);
    last = now;
  };
}

async function runCase(c: Case): Promise<void> {
  const phase = phases(c);
  const postgres = c.database === 'postgres' ? await createTestDatabase() : undefined;
  const mysql = c.database === 'mysql' ? await mysqlDatabaseWithUser() : undefined;
  const project = await createProject(c);
  let passed = false;
  phase('project');
  try {
    if (c.variant === 'ts' && !nodeLine) {
      const errors = await typeCheck(project);
      assert.equal(errors, undefined, `tsc --strict --noEmit:\n${errors}`);
      phase('tsc');
    }
    // The test server trusts local connections, so the password is not checked: it is there to
    // prove that nothing prints the connection string.
    const url = postgres && new URL(postgres.url);
    if (url) url.password = secret;
    const env: Record<string, string> = url
      ? { DATABASE_URL: url.toString() }
      : mysql
        ? { DATABASE_URL: mysql.url }
        : { SQLITE_PATH: join(project.dir, 'app.db') };
    if (url && c.variant === 'js-esm') {
      // Without DATABASE_URL pg reads the PG* variables; a server that is not there is named in
      // the log, with what to check.
      await assert.rejects(
        startApp(project, 'app', { PGHOST: '127.0.0.1', PGPORT: '1' }),
        /could not open a PostgreSQL connection \(connect ECONNREFUSED 127\.0\.0\.1:1\)\. Check that the server is up, that DATABASE_URL points to it/,
      );
    }

    // On a fresh database, as in a new directory.
    if (!c.recipe) await sampleApp(project, env);
    phase('sample app');
    if (c.target === 'fastify' && c.variant === 'js-esm') {
      // Registered twice, the plugin steps aside for itself: one scope, one connection.
      const twice = await startApp(project, 'test-app', { ...env, REGISTER_TWICE: '1' });
      try {
        await getJson(`${twice.url}/users/1`);
        const stats = await getJson<Stats>(`${twice.url}/__stats`);
        assert.equal(
          stats.total,
          1,
          `two connections for one request at a time: ${JSON.stringify(stats)}`,
        );
      } finally {
        await stopApp(twice);
      }
    }

    const app = await startApp(project, 'test-app', env);
    phase('start');
    // The adapters' code is the same in every language variant: the real-app scenarios run once
    // per target and database.
    const realAppCase = c.variant === 'ts' && !c.recipe;
    try {
      await scenarios(c, app, env);
      phase('scenarios');
      if (realAppCase) await realApps(c, app, env);
      phase('real apps');
    } catch (error) {
      // The scenario's failure is the one to report, not what it left for the shutdown check.
      await stopApp(app).catch(() => {});
      throw error;
    }
    await stopApp(app);
    phase('stop');
    await checkDatabase(c, env, 'after shutdown');

    await exhaustion(project, env);
    phase('exhaustion');
    if (realAppCase) {
      await longLived(project, env);
      if (c.target === 'express' || c.target === 'koa' || c.target === 'hono') {
        await registeredTwice(project, env);
      }
      if (c.target === 'nestjs') await nestCatchAll(project, env);
      if (c.database !== 'sqlite') await unreachable(c, project, env);
      else await unopenable(project);
      phase('long-lived, registered twice, unreachable');
    }
    passed = true;
  } finally {
    // A failed case keeps its directory under .tmp for a look.
    if (passed || !process.env.E2E_KEEP) project.remove();
    await postgres?.drop();
    await mysql?.drop();
  }
}

/** The app's MySQL URL → the same database as the server's root, for looking from the side. */
const rootUrls = new Map<string, string>();

/**
 * A new MySQL database and a user of its own that logs in with `secret`, so that the checks
 * that nothing prints the password check something (the server does check it).
 */
async function mysqlDatabaseWithUser(): Promise<{ url: string; drop(): Promise<void> }> {
  const database = await createMysqlTestDatabase();
  const url = new URL(database.url);
  const name = url.pathname.slice(1);
  const user = `u${name.slice(-12)}`;
  const admin = (sql: string) => mysqlAdmin(database.url, (conn) => conn.query(sql));
  await admin(`CREATE USER '${user}'@'%' IDENTIFIED BY '${secret}'`);
  await admin(`GRANT ALL ON \`${name}\`.* TO '${user}'@'%'`);
  url.username = user;
  url.password = secret;
  rootUrls.set(url.toString(), database.url);
  return {
    url: url.toString(),
    async drop() {
      rootUrls.delete(url.toString());
      await admin(`DROP USER IF EXISTS '${user}'@'%'`);
      await database.drop();
    },
  };
}

before(() => {
  installDependencies();
});

/** The adapters, index and sample apps (not the runtime, which has its own tests). */
async function renderTemplates(database: DatabaseId, style: OutputStyle): Promise<GeneratedFile[]> {
  const files = await renderGeneratedFiles({
    targets: targetIds,
    database,
    style,
    dir: 'src/db',
    version: '0.0.0-e2e',
  });
  for (const target of targetIds) {
    const path = `src/app${style.language === 'ts' ? '.ts' : '.js'}`;
    files.push(
      await renderAppFile({
        targets: [target],
        target,
        database,
        style,
        dir: 'src/db',
        path,
        version: '0.0.0-e2e',
      }),
    );
  }
  return files.filter((file) => file.kind !== 'runtime');
}

// Line-independent: on the newest line only.
if (!nodeLine) {
  describe('generated code is formatted as a person would write it', () => {
    for (const database of databaseIds) {
      test(`TypeScript for ${database}`, async () => {
        const files = await renderTemplates(database, { language: 'ts', moduleFormat: 'esm' });
        for (const file of files) {
          const formatted = await prettier.format(file.content, {
            filepath: file.path,
            singleQuote: true,
            trailingComma: 'all',
            printWidth: 100,
          });
          assert.equal(file.content, formatted, `${file.path} (${file.target}) is not formatted`);
        }
      });

      test(`JavaScript for ${database} keeps the comments that explain each file`, async () => {
        const typescript = await renderTemplates(database, { language: 'ts', moduleFormat: 'esm' });
        for (const moduleFormat of ['esm', 'cjs'] as const) {
          const javascript = await renderTemplates(database, { language: 'js', moduleFormat });
          typescript.forEach((source, i) => {
            // The first comment after the "Generated by" header says what the file is for.
            const summary = source.content
              .split('\n')
              .find((line) => line.startsWith('// ') && !/Generated by|Re-running/.test(line));
            assert.ok(summary, `${source.path} (${source.target}) has no summary`);
            assert.ok(
              javascript[i]!.content.includes(summary),
              `${javascript[i]!.path} (${source.target}, ${moduleFormat}) lost: ${summary}`,
            );
          });
        }
      });
    }
  });
}

/**
 * Restify 11 serves through spdy, whose http-deceiver calls process.binding('http_parser'),
 * which Node.js 24 removed: restify does not start there, with or without db-hooks.
 */
function unsupported(c: Case): string | undefined {
  const major = Number(process.versions.node.split('.')[0]);
  if (c.recipe === 'restify' && major >= 24) {
    return `restify 11 does not start on Node.js ${major} (process.binding('http_parser') is gone)`;
  }
  return undefined;
}

describe('generated adapters on the real frameworks', { concurrency: 2 }, () => {
  for (const c of selected) {
    const skip = unsupported(c) ?? (c.database === 'mysql' ? mysqlSkipReason : undefined);
    test(caseName(c), { skip }, () => runCase(c));
  }
});
