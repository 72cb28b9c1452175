// End to end: the app owns the pool and its process (issue 22), with the real frameworks from npm.
// One JavaScript (ESM) project per database (MySQL where the run has a server) holds every
// target's generated files and the scripts below, each run by node in a child process with a
// bare environment:
//
// - Fastify as fastify-cli's test helper uses it (build an app, register the plugin, inject,
//   app.close(), build the next one): every app answers from the database, also when each app
//   closes the pool in its own onClose hook (the next one reopens it); two apps sharing `db` at
//   once (public + admin): closing one leaves the other serving, a request in flight included.
// - NestJS on @nestjs/platform-express and -fastify as `nest new`'s e2e test does it
//   (Test.createTestingModule per test, init, close): every test answers from the database, also
//   when the app closes the pool in its onApplicationShutdown; two Nest apps sharing `db`; with
//   the database down, a 503 from the testing module's app too (not a 500 from the filter).
//   After the last test, `await db.closePool()` lets the process end by itself at once.
// - For every target: the generated adapter, created and registered in its framework and serving
//   requests, adds no listener to `process` (compared with the same app without the adapter).
// - Under --unhandled-rejections=warn and =strict (and Node's default), an app with the adapter
//   does what it does without it when an unrelated promise rejects unhandled (Express 5,
//   Express 4, Fastify). Express 4 with the unhandledRejection listener the CLI's Next steps give
//   its entry file: an unprotected async handler whose client left (its next statement refused)
//   does not end the process, and an unrelated rejection still does.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { type DatabaseId, targetIds } from '../../src/cli/targets.ts';
import { mysqlOff, mysqlSkipReason } from '../runtime/databases.ts';
import { createMysqlTestDatabase, mysqlAdmin } from '../support/mariadb.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { installDependencies, linkDependencies } from './support/deps.ts';
import { fetchReply, send } from './support/http.ts';
import { generatedProject, type Project, type RunningApp, startApp } from './support/project.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// What the scripts share: the route's query, and an HTTP client on a fresh connection.
const common = `import { request } from 'node:http';
import { db } from './db/index.js';

export { db };
export const host = '127.0.0.1';
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A row from the database, and whether the statement ran on a request's own connection. */
export async function item() {
  const row = await db.get('SELECT id, name FROM items WHERE id = 1');
  return { id: Number(row.id), name: row.name, inScope: !db.isClosed() };
}

/** A handler that holds its request's connection across a pause. */
export async function slowItem() {
  const first = await item();
  await sleep(300);
  return { first, second: await item() };
}

export function call(url, options = {}) {
  return new Promise((resolve, reject) => {
    const headers = options.body === undefined ? {} : { 'content-type': 'application/json' };
    const req = request(url, { method: options.method ?? 'GET', agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export const urlOf = (server) => 'http://' + host + ':' + server.address().port;

export const closeServer = (server) => () => new Promise((resolve) => server.close(() => resolve()));

export function assertItem(reply, inScope = true) {
  if (reply.status !== 200) throw new Error('status ' + reply.status + ': ' + reply.body);
  const body = JSON.parse(reply.body);
  const expected = JSON.stringify({ id: 1, name: 'one', inScope });
  if (JSON.stringify(body) !== expected) throw new Error('body ' + reply.body);
}

/** slowItem()'s reply: both statements answered, on the request's connection. */
export function assertSlow(reply) {
  if (reply.status !== 200) throw new Error('in flight: ' + reply.status + ' ' + reply.body);
  const { first, second } = JSON.parse(reply.body);
  if (!first.inScope || !second.inScope) throw new Error('outside the scope: ' + reply.body);
}
`;

// fastify-cli's generated test/helper.js: build(t) registers the app (wrapped with
// fastify-plugin, as its skipOverride does), and t.after() closes it; each test builds its own
// app. Then the same with an app that closes the pool in its own onClose hook, so each next app
// reopens it; then two apps at once.
const fastifyScript = `import { describe, after, test } from 'node:test';
import Fastify from 'fastify';
import fp from 'fastify-plugin';
import { dbHooks } from './db/fastify.js';
import { assertItem, assertSlow, call, db, host, item, slowItem, sleep, urlOf } from './common.js';

// The app, as fastify-cli's app.js.
async function app(fastify) {
  await fastify.register(dbHooks);
  fastify.get('/items/1', () => item());
  fastify.get('/slow', () => slowItem());
}

async function closingApp(fastify) {
  await app(fastify);
  fastify.addHook('onClose', () => db.closePool());
}

async function build(t, plugin = app) {
  const instance = Fastify();
  instance.register(fp(plugin));
  await instance.ready();
  t.after(() => instance.close());
  return instance;
}

const inject = async (instance, url) => {
  const res = await instance.inject({ url });
  return { status: res.statusCode, body: res.body };
};

describe('fastify-cli app per test', () => {
  after(async () => {
    await db.closePool();
    console.log('pool closed at ' + Date.now());
  });

  for (const n of [1, 2, 3, 4]) {
    test('app ' + n + ' answers from the database', async (t) => {
      const instance = await build(t);
      assertItem(await inject(instance, '/items/1'));
      assertItem(await inject(instance, '/items/1'));
    });
  }

  for (const n of [1, 2, 3]) {
    test('app ' + n + ' that closes the pool in its onClose hook', async (t) => {
      const instance = await build(t, closingApp);
      // After build()'s: hooks run in the order they were added.
      t.after(() => {
        if (db.stats().total !== 0) throw new Error('the pool is open: ' + JSON.stringify(db.stats()));
      });
      assertItem(await inject(instance, '/items/1'));
    });
  }

  test('two apps share db: closing admin leaves public serving', async () => {
    const pub = Fastify();
    await pub.register(app);
    const admin = Fastify();
    await admin.register(app);
    try {
      await pub.listen({ port: 0, host });
      await admin.ready();
      const url = urlOf(pub.server);
      assertItem(await call(url + '/items/1'));
      assertItem(await inject(admin, '/items/1'));
      const slow = call(url + '/slow');
      await sleep(100);
      await admin.close();
      assertSlow(await slow);
      for (let i = 0; i < 3; i++) assertItem(await call(url + '/items/1'));
    } finally {
      await admin.close(); // again, if a step failed first: a second close() does nothing
      await pub.close();
    }
  });
});
`;

// `nest new`'s test/app.e2e-spec.ts, with node:test for jest, and for supertest what it does:
// listen on an ephemeral port for the request, close after it. On Fastify, app.inject(), as
// Nest's docs test Fastify apps. Decorators are applied as the functions they are.
const nestScript = `import 'reflect-metadata';
import { after, afterEach, beforeEach, describe, it, test } from 'node:test';
import { Controller, Get, Inject, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { DbHooksModule } from './db/nestjs.js';
import { Database } from './db/runtime.js';
import { assertItem, assertSlow, call, db, host, item, slowItem, sleep, urlOf } from './common.js';

const platform = process.env.NEST_PLATFORM;
const expected = Number(process.env.EXPECT_STATUS ?? 200);
const adapter = () => (platform === 'fastify' ? [new FastifyAdapter()] : []);
const options = { logger: ['error', 'warn'] };

class ItemsController {
  constructor(database) {
    this.database = database;
  }
  find() {
    if (this.database !== db) throw new Error('the injected Database is not db');
    return item();
  }
  slow() {
    return slowItem();
  }
}
Inject(Database)(ItemsController, undefined, 0);
for (const [method, path] of [['find', 'items/1'], ['slow', 'slow']]) {
  const descriptor = Object.getOwnPropertyDescriptor(ItemsController.prototype, method);
  Get(path)(ItemsController.prototype, method, descriptor);
}
Controller()(ItemsController);

class AppModule {}
Module({ imports: [DbHooksModule], controllers: [ItemsController] })(AppModule);
class AdminModule {}
Module({ imports: [DbHooksModule], controllers: [ItemsController] })(AdminModule);
// An app that closes the pool itself, in its root module's shutdown hook.
class ClosingAppModule {
  onApplicationShutdown() {
    return db.closePool();
  }
}
Module({ imports: [DbHooksModule], controllers: [ItemsController] })(ClosingAppModule);

async function request(app, path) {
  if (platform === 'fastify') {
    const res = await app.inject({ method: 'GET', url: path });
    return { status: res.statusCode, headers: res.headers, body: res.payload };
  }
  const server = app.getHttpServer();
  await new Promise((resolve) => server.listen(0, host, resolve));
  try {
    return await call(urlOf(server) + path);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

async function createApp(module) {
  const moduleFixture = await Test.createTestingModule({ imports: [module] }).compile();
  const app = moduleFixture.createNestApplication(...adapter(), options);
  await app.init();
  if (platform === 'fastify') await app.getHttpAdapter().getInstance().ready();
  return app;
}

describe('NestJS on ' + platform, () => {
  after(async () => {
    await db.closePool();
    console.log('pool closed at ' + Date.now());
  });

  describe('AppController (e2e)', () => {
    let app;
    beforeEach(async () => {
      app = await createApp(AppModule);
    });
    afterEach(async () => {
      await app.close();
    });

    for (const n of [1, 2, 3, 4]) {
      it('/items/1 (GET), test ' + n, async () => {
        const reply = await request(app, '/items/1');
        if (expected === 200) return assertItem(reply);
        if (reply.status !== expected) throw new Error('status ' + reply.status + ': ' + reply.body);
        const body = JSON.parse(reply.body);
        if (body.statusCode !== 503 || body.error !== 'Service Unavailable') {
          throw new Error('not Nest\\'s 503: ' + reply.body);
        }
        if (reply.headers['retry-after'] !== '1') throw new Error('no Retry-After: 1');
      });
    }
  });

  describe('an app that closes the pool on shutdown', { skip: expected !== 200 }, () => {
    let app;
    beforeEach(async () => {
      app = await createApp(ClosingAppModule);
    });
    afterEach(async () => {
      await app.close();
      if (db.stats().total !== 0) throw new Error('the pool is open: ' + JSON.stringify(db.stats()));
    });
    for (const n of [1, 2, 3]) {
      it('/items/1 (GET), test ' + n, async () => assertItem(await request(app, '/items/1')));
    }
  });

  test('two apps share db: closing admin leaves public serving', { skip: expected !== 200 }, async () => {
    const pub = await NestFactory.create(AppModule, ...adapter(), options);
    const admin = await NestFactory.create(AdminModule, ...adapter(), options);
    try {
      await pub.listen(0, host);
      await admin.listen(0, host);
      const url = urlOf(pub.getHttpServer());
      assertItem(await call(url + '/items/1'));
      assertItem(await call(urlOf(admin.getHttpServer()) + '/items/1'));
      const slow = call(url + '/slow');
      await sleep(100);
      await admin.close();
      assertSlow(await slow);
      for (let i = 0; i < 3; i++) assertItem(await call(url + '/items/1'));
    } finally {
      await admin.close(); // again, if a step failed first: a second close() does nothing
      await pub.close();
    }
  });
});
`;

// Loads one app (argv[2]) with or without (argv[3]) the generated adapter, serves requests, and
// prints the process's listeners before anything is loaded, once the runtime ran a statement,
// after the requests, and after the app and the pool closed.
const listenersScript = `const listeners = () =>
  Object.fromEntries(process.eventNames().map((name) => [String(name), process.listenerCount(name)]));
const start = listeners();
const [name, mode] = process.argv.slice(2);
const withAdapter = mode === 'with';
const { assertItem, call, closeServer, db, host, item, urlOf } = await import('./common.js');
await item(); // outside any request: the runtime and the driver are loaded and used
const loaded = listeners();

async function listening(server) {
  if (!server.listening) await new Promise((resolve) => server.once('listening', resolve));
  return { server, close: closeServer(server) };
}

async function expressApp(express) {
  const app = express();
  if (withAdapter) app.use((await import('./db/express.js')).dbHooks());
  app.all('/items/1', (req, res, next) => {
    item().then((row) => res.json(row), next);
  });
  return listening(app.listen(0, host));
}

async function koaApp(Koa) {
  const app = new Koa();
  if (withAdapter) app.use((await import('./db/koa.js')).dbHooks());
  app.use(async (ctx) => {
    ctx.body = await item();
  });
  return listening(app.listen(0, host));
}

async function nestApp(platform) {
  await import('reflect-metadata');
  const { All, Controller, Module } = await import('@nestjs/common');
  const { NestFactory } = await import('@nestjs/core');
  class ItemsController {
    find() {
      return item();
    }
  }
  const find = Object.getOwnPropertyDescriptor(ItemsController.prototype, 'find');
  All('items/1')(ItemsController.prototype, 'find', find);
  Controller()(ItemsController);
  class AppModule {}
  const imports = withAdapter ? [(await import('./db/nestjs.js')).DbHooksModule] : [];
  Module({ imports, controllers: [ItemsController] })(AppModule);
  const options = { logger: ['error', 'warn'] };
  const app =
    platform === 'fastify'
      ? await NestFactory.create(
          AppModule,
          new (await import('@nestjs/platform-fastify')).FastifyAdapter(),
          options,
        )
      : await NestFactory.create(AppModule, options);
  await app.listen(0, host);
  return { server: app.getHttpServer(), close: () => app.close() };
}

async function nodeServer(listener) {
  const { createServer } = await import('node:http');
  return listening(createServer(listener).listen(0, host));
}

async function jsonListener(req, res) {
  const body = JSON.stringify(await item());
  res.writeHead(200, { 'content-type': 'application/json' }).end(body);
}

async function honoServer(fetch) {
  const { serve } = await import('@hono/node-server');
  return listening(serve({ fetch, port: 0, hostname: host }));
}

const apps = {
  express: async () => expressApp((await import('express')).default),
  express4: async () => expressApp((await import('express4')).default),
  koa: async () => koaApp((await import('koa')).default),
  koa2: async () => koaApp((await import('koa2')).default),
  fastify: async () => {
    const app = (await import('fastify')).default();
    if (withAdapter) await app.register((await import('./db/fastify.js')).dbHooks);
    app.route({ method: ['GET', 'POST'], url: '/items/1', handler: () => item() });
    await app.listen({ port: 0, host });
    return { server: app.server, close: () => app.close() };
  },
  hono: async () => {
    const app = new (await import('hono')).Hono();
    if (withAdapter) app.use((await import('./db/hono.js')).dbHooks());
    app.all('/items/1', async (c) => c.json(await item()));
    return honoServer(app.fetch);
  },
  fetch: async () => {
    const handler = async () => Response.json(await item());
    return honoServer(withAdapter ? (await import('./db/fetch.js')).withDatabase(handler) : handler);
  },
  'node-http': async () =>
    nodeServer(withAdapter ? (await import('./db/node-http.js')).withDatabase(jsonListener) : jsonListener),
  hooks: async () => {
    const hooks = withAdapter ? await import('./db/hooks.js') : undefined;
    const listener = async (req, res) => {
      await hooks?.beforeRequest();
      try {
        await jsonListener(req, res);
      } finally {
        await hooks?.teardownRequest();
      }
    };
    return nodeServer(hooks ? hooks.requestScope(listener) : listener);
  },
  'nestjs-express': () => nestApp('express'),
  'nestjs-fastify': () => nestApp('fastify'),
};

const { server, close } = await apps[name]();
const url = urlOf(server) + '/items/1';
for (const options of [{}, { method: 'POST', body: '{"name":"x"}' }, {}]) {
  assertItem(await call(url, options), withAdapter);
}
const served = listeners();
await close();
await db.closePool();
const closed = listeners();
console.log('LISTENERS ' + JSON.stringify({ start, loaded, served, closed }));
`;

// An app that serves /items/1 and, on /reject, lets an unrelated promise reject unhandled. APP:
// express, express4 or fastify; ADAPTER: with, without, or listener (with, and the
// unhandledRejection listener the CLI's Next steps give an Express 4 entry file).
const rejectionsScript = `import { host, item, sleep } from './common.js';

const framework = process.env.APP;
const mode = process.env.ADAPTER;

// An unrelated promise that rejects with nobody to catch it.
function rejectUnhandled() {
  Promise.reject(new Error('unrelated rejection'));
}

// Express 4 ignores the promise of an async handler. The client leaves while this one waits,
// so its next statement is refused (ScopeReleasedError, reason 'client-gone'), unhandled.
async function hold(res) {
  await item();
  console.log('hold: started');
  await new Promise((resolve) => {
    res.once('close', resolve);
    setTimeout(resolve, 5000);
  });
  await sleep(50);
  try {
    await item();
  } catch (error) {
    console.log('hold: refused ' + error.name + ' ' + error.reason);
    throw error;
  }
  res.end('the client was still there');
}

const listening = (port) => console.log('listening on http://' + host + ':' + port);

if (framework === 'fastify') {
  const app = (await import('fastify')).default();
  if (mode !== 'without') await app.register((await import('./db/fastify.js')).dbHooks);
  app.get('/items/1', () => item());
  app.get('/reject', async () => {
    rejectUnhandled();
    return { rejected: true };
  });
  await app.listen({ port: 0, host });
  listening(app.server.address().port);
} else {
  const express = (await import(framework)).default;
  const adapter = mode === 'without' ? undefined : await import('./db/express.js');
  if (mode === 'listener') {
    const { isGoneClient } = adapter;
    process.on('unhandledRejection', (reason) => {
      if (!isGoneClient(reason)) throw reason; // any other ends the process, as by default
    });
  }
  const app = express();
  if (adapter) app.use(adapter.dbHooks());
  app.get('/items/1', (req, res, next) => {
    item().then((row) => res.json(row), next);
  });
  app.get('/reject', (req, res) => {
    rejectUnhandled();
    res.json({ rejected: true });
  });
  app.get('/hold', async (req, res) => {
    await hold(res);
  });
  if (adapter) app.use(adapter.skipGoneClients());
  const server = app.listen(0, host, () => listening(server.address().port));
}
`;

interface LifecycleProject extends Project {
  env: Record<string, string>;
}

/** Every target's generated files for `database`, the scripts above, and a table with one row. */
async function lifecycleProject(
  database: DatabaseId,
  serverUrl: string | undefined,
): Promise<LifecycleProject> {
  const { dir, ext, files, write } = await generatedProject(`lifecycle-${database}-`, 'js-esm', {
    targets: targetIds,
    database,
  });
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    write(
      'package.json',
      `${JSON.stringify({ name: 'lifecycle', private: true, type: 'module' })}\n`,
    );
    write('src/common.js', common);
    write('src/fastify.test.js', fastifyScript);
    write('src/nest.test.js', nestScript);
    write('src/listeners.js', listenersScript);
    write('src/rejections.js', rejectionsScript);
    linkDependencies(dir);
    const create = 'CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)';
    const insert = "INSERT INTO items (id, name) VALUES (1, 'one')";
    if (database === 'mysql' && serverUrl) {
      await mysqlAdmin(serverUrl, async (conn) => {
        await conn.query(create);
        await conn.query(insert);
      });
      return { dir, ext, files, env: { DATABASE_URL: serverUrl }, remove };
    }
    if (serverUrl) {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        await client.query(create);
        await client.query(insert);
      } finally {
        await client.end();
      }
      return { dir, ext, files, env: { DATABASE_URL: serverUrl }, remove };
    }
    const path = join(dir, 'items.db');
    const file = new BetterSqlite3(path);
    file.pragma('journal_mode = wal');
    file.exec(`${create}; ${insert}`);
    file.close();
    return { dir, ext, files, env: { SQLITE_PATH: path }, remove };
  } catch (error) {
    remove();
    throw error;
  }
}

interface Finished {
  code: number | null;
  output: string;
  /** Date.now() when the process exited. */
  exitedAt: number;
}

/**
 * Runs src/<file> of the project to its end (60 s at most), with only `env` and PATH; `nodeArgs`
 * go to node, `args` to the script.
 */
function runScript(
  project: Project,
  file: string,
  env: Record<string, string>,
  { nodeArgs = [], args = [] }: { nodeArgs?: string[]; args?: string[] } = {},
): Promise<Finished> {
  const child = spawn(process.execPath, [...nodeArgs, join('src', file), ...args], {
    cwd: project.dir,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const exitedAt = Date.now();
      // The rest of the output arrives before 'close'.
      child.once('close', () => resolve({ code, output, exitedAt }));
    });
  });
}

/**
 * A node:test file run by node: every test passed, `passed` of them, and once its last test
 * closed the pool the process ended by itself promptly (no socket or timer of the pool left).
 */
async function runTests(
  project: Project,
  file: string,
  env: Record<string, string>,
  passed: number,
): Promise<void> {
  const run = await runScript(project, file, env, { nodeArgs: ['--test-reporter=tap'] });
  const count = (name: string) => new RegExp(`^# ${name} (\\d+)$`, 'm').exec(run.output)?.[1];
  assert.equal(count('fail'), '0', run.output);
  assert.equal(count('pass'), String(passed), run.output);
  assert.equal(run.code, 0, run.output);
  const closedAt = Number(/pool closed at (\d+)/.exec(run.output)?.[1]);
  assert.ok(closedAt > 0, `the pool was never closed:\n${run.output}`);
  // What could keep it alive keeps it 10 s (pg's idle timeout) or forever (a socket); ending
  // the test process takes far less, however loaded the machine.
  const lingered = run.exitedAt - closedAt;
  assert.ok(lingered < 7000, `the process lived ${lingered} ms after closePool():\n${run.output}`);
}

/** A loopback port nothing listens on (a PostgreSQL server that is down). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

type Listeners = Record<string, number>;
interface ListenerSteps {
  start: Listeners;
  loaded: Listeners;
  served: Listeners;
  closed: Listeners;
}

/** listeners.js for `app`, with or without its adapter: the listeners at each step. */
async function processListeners(
  project: LifecycleProject,
  app: string,
  mode: 'with' | 'without',
): Promise<ListenerSteps> {
  const run = await runScript(project, 'listeners.js', project.env, { args: [app, mode] });
  const line = /^LISTENERS (.*)$/m.exec(run.output)?.[1];
  assert.ok(run.code === 0 && line, `${app} ${mode} the adapter:\n${run.output}`);
  return JSON.parse(line) as ListenerSteps;
}

/** Resolves with the exit code (or signal) if the app ends within `ms`, else undefined. */
async function exitWithin(app: RunningApp, ms: number): Promise<string | undefined> {
  const { child } = app;
  const describe = () => (child.exitCode !== null ? `code ${child.exitCode}` : child.signalCode!);
  if (child.exitCode !== null || child.signalCode !== null) return describe();
  const exited = new Promise<string>((resolve) => child.once('exit', () => resolve(describe())));
  return Promise.race([exited, sleep(ms).then(() => undefined)]);
}

/** Waits (5 s at most) until the app printed a line matching `pattern`. */
async function printed(app: RunningApp, pattern: RegExp): Promise<void> {
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(20)) {
    if (pattern.test(app.output())) return;
  }
  assert.fail(`the app never printed ${pattern}:\n${app.output()}`);
}

/** After what happened to the app: 'serves the next request', or 'ends (code 1)'. */
async function fate(app: RunningApp): Promise<string> {
  const ended = await exitWithin(app, 300);
  if (ended !== undefined) return `ends (${ended})`;
  const next = await fetchReply(`${app.url}/items/1`).catch(() => undefined);
  if (next?.status === 200 && app.child.exitCode === null) return 'serves the next request';
  return `ends (${(await exitWithin(app, 5000)) ?? 'still up, but did not answer'})`;
}

type Policy = 'default' | 'warn' | 'strict';
const policyArgs = (policy: Policy) =>
  policy === 'default' ? [] : [`--unhandled-rejections=${policy}`];

/** Starts rejections.js, lets an unrelated promise reject unhandled, and tells what followed. */
async function afterUnrelatedRejection(
  project: LifecycleProject,
  framework: string,
  adapter: 'with' | 'without' | 'listener',
  policy: Policy,
): Promise<string> {
  const env = { ...project.env, APP: framework, ADAPTER: adapter };
  const app = await startApp(project, 'rejections', env, policyArgs(policy));
  try {
    assert.equal((await fetchReply(`${app.url}/items/1`)).status, 200, app.output());
    // The process may end before it answers (strict).
    await send(`${app.url}/reject`).catch(() => undefined);
    const result = await fate(app);
    assert.match(app.output(), /unrelated rejection/, 'Node said nothing of the rejection');
    return result;
  } finally {
    await app.stop();
  }
}

/** Express 4: /hold's client leaves mid-handler, its next statement is refused, unhandled. */
async function afterGoneClient(
  project: LifecycleProject,
  adapter: 'with' | 'listener',
  policy: Policy,
): Promise<string> {
  const env = { ...project.env, APP: 'express4', ADAPTER: adapter };
  const app = await startApp(project, 'rejections', env, policyArgs(policy));
  try {
    const reply = await send(`${app.url}/hold`, { abortWhen: printed(app, /hold: started/) });
    assert.equal(reply, 'aborted');
    await printed(app, /hold: refused/);
    assert.match(app.output(), /hold: refused ScopeReleasedError client-gone/);
    return await fate(app);
  } finally {
    await app.stop();
  }
}

before(() => installDependencies());

const projects = new Map<DatabaseId, LifecycleProject>();
let postgres: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
let mysql: Awaited<ReturnType<typeof createMysqlTestDatabase>> | undefined;
/** The databases every test runs on: MySQL where the run has a server (the newest Node line). */
const databases: readonly DatabaseId[] =
  mysqlOff || mysqlSkipReason ? ['sqlite', 'postgres'] : ['sqlite', 'postgres', 'mysql'];

before(async () => {
  postgres = await createTestDatabase();
  projects.set('sqlite', await lifecycleProject('sqlite', undefined));
  projects.set('postgres', await lifecycleProject('postgres', postgres.url));
  if (databases.includes('mysql')) {
    mysql = await createMysqlTestDatabase();
    projects.set('mysql', await lifecycleProject('mysql', mysql.url));
  }
});

after(async () => {
  for (const project of projects.values()) project.remove();
  await postgres?.drop();
  await mysql?.drop();
});

const project = (database: DatabaseId) => projects.get(database)!;

describe('the app owns the pool: apps built and closed one after another share db', {
  concurrency: 2,
}, () => {
  for (const database of databases) {
    test(`Fastify: fastify-cli's app per test, apps that close the pool, two at once, ${database}`, () =>
      runTests(project(database), 'fastify.test.js', project(database).env, 8));
    for (const platform of ['express', 'fastify']) {
      test(`NestJS on platform-${platform}: nest new's e2e, apps that close the pool, two at once, ${database}`, () =>
        runTests(
          project(database),
          'nest.test.js',
          {
            ...project(database).env,
            NEST_PLATFORM: platform,
          },
          8,
        ));
    }
  }
  for (const [platform, database] of [
    ['express', 'postgres'],
    ['fastify', 'postgres'],
    // MySQL's driver fails its own way (ECONNREFUSED from mysql2): one platform is enough.
    ...(databases.includes('mysql') ? [['express', 'mysql'] as const] : []),
  ] as const) {
    test(`NestJS on platform-${platform} under Test.createTestingModule, ${database} down: 503`, async () => {
      const url = `${database}://nobody@127.0.0.1:${await closedPort()}/nothing`;
      const env = { DATABASE_URL: url, NEST_PLATFORM: platform, EXPECT_STATUS: '503' };
      const run = await runScript(project(database), 'nest.test.js', env, {
        nodeArgs: ['--test-reporter=tap'],
      });
      assert.match(run.output, /^# pass 4$/m, run.output);
      assert.match(run.output, /^# fail 0$/m, run.output);
      assert.equal(run.code, 0, run.output);
      assert.doesNotMatch(run.output, /isHeadersSent|TypeError/, run.output);
    });
  }
});

// Each app of listeners.js: the targets, Express and Koa in both majors, NestJS on both platforms.
const listenerApps = [
  'express',
  'express4',
  'fastify',
  'koa',
  'koa2',
  'hono',
  'nestjs-express',
  'nestjs-fastify',
  'node-http',
  'fetch',
  'hooks',
];

describe('no adapter adds a listener to process', { concurrency: 2 }, () => {
  test('every target is covered', () => {
    for (const target of targetIds) {
      assert.ok(
        listenerApps.some((app) => app.startsWith(target)),
        `${target} is not tested`,
      );
    }
  });
  for (const database of databases) {
    for (const app of listenerApps) {
      test(`${app}, ${database}: created, registered, serving, closed`, async () => {
        const [withAdapter, without] = await Promise.all([
          processListeners(project(database), app, 'with'),
          processListeners(project(database), app, 'without'),
        ]);
        // The runtime and its driver, loaded and used, add none either.
        assert.deepEqual(withAdapter.loaded, withAdapter.start, 'the runtime added a listener');
        assert.deepEqual(withAdapter.served, without.served, 'the adapter added a listener');
        assert.deepEqual(withAdapter.closed, without.closed, 'a listener outlived the app');
      });
    }
  }
});

describe('the process keeps its --unhandled-rejections policy', { concurrency: 2 }, () => {
  const expected: Record<Policy, string> = {
    default: 'ends (code 1)',
    warn: 'serves the next request',
    strict: 'ends (code 1)',
  };
  for (const framework of ['express', 'express4', 'fastify']) {
    for (const policy of ['warn', 'strict', 'default'] as const) {
      test(`${framework}, ${policy}: an unrelated rejection, with the adapter as without`, async () => {
        const sqlite = project('sqlite');
        const [withAdapter, without] = await Promise.all([
          afterUnrelatedRejection(sqlite, framework, 'with', policy),
          afterUnrelatedRejection(sqlite, framework, 'without', policy),
        ]);
        assert.equal(without, expected[policy], 'the app without the adapter');
        assert.equal(withAdapter, without);
      });
    }
  }

  test("Express 4 + the Next steps' listener: a client gone mid-handler ends nothing", async () => {
    const sqlite = project('sqlite');
    const [passed, warn, control] = await Promise.all([
      afterGoneClient(sqlite, 'listener', 'default'),
      afterGoneClient(sqlite, 'listener', 'warn'),
      // Without it, the refused statement is an unhandled rejection that ends the process.
      afterGoneClient(sqlite, 'with', 'default'),
    ]);
    assert.equal(passed, 'serves the next request');
    assert.equal(warn, 'serves the next request');
    assert.equal(control, 'ends (code 1)', 'the scenario made no unhandled rejection');
  });

  test("Express 4 + the Next steps' listener: an unrelated rejection still ends the process", async () => {
    const sqlite = project('sqlite');
    const result = await afterUnrelatedRejection(sqlite, 'express4', 'listener', 'default');
    assert.equal(result, expected.default);
  });
});
