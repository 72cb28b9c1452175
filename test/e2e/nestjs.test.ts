// End to end, NestJS the way `nest new` sets it up: an app written with decorators and injection
// by type (emitDecoratorMetadata), compiled by tsc under the starter's tsconfig and run by node,
// on @nestjs/platform-express and @nestjs/platform-fastify, SQLite, PostgreSQL and MySQL (where
// the run has a server: the newest Node line). What the
// shared scenarios (adapters.test.ts) cannot see: the app's own middleware, a guard, an
// interceptor (before and after the handler) and a pipe run inside the request's scope, on the
// handler's connection; `Database` is injected by type and is `db`; pool exhaustion is a 503
// from Nest's exception layer (its usual JSON, Retry-After, no stack in the log), before any
// guard with eager checkout; a client that leaves is no logged error; on SIGTERM with
// enableShutdownHooks() the request in flight finishes, then the app's shutdown hook closes the
// pool. And the new app the CLI makes in an empty folder type-checks and serves its route.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { renderGeneratedFiles } from '../../src/cli/render.ts';
import type { DatabaseId } from '../../src/cli/targets.ts';
import { runCli } from '../cli/helpers.ts';
import { mysqlOff, mysqlSkipReason } from '../runtime/databases.ts';
import { createMysqlTestDatabase } from '../support/mariadb.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { binary, installDependencies, linkDependencies, repoRoot } from './support/deps.ts';
import { fetchReply, getJson, send } from './support/http.ts';
import { type Project, type RunningApp, startApp } from './support/project.ts';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** tsconfig.json as `nest new` writes it (NestJS 11 starter), with the ES module output Nest 12 needs. */
const nestTsconfig = {
  compilerOptions: {
    module: 'nodenext',
    moduleResolution: 'nodenext',
    resolvePackageJsonExports: true,
    esModuleInterop: true,
    isolatedModules: true,
    declaration: true,
    removeComments: true,
    emitDecoratorMetadata: true,
    experimentalDecorators: true,
    allowSyntheticDefaultImports: true,
    target: 'ES2023',
    sourceMap: true,
    outDir: './build',
    rootDir: '.', // build/src/main.js, which startApp() runs
    skipLibCheck: true,
    strictNullChecks: true,
    forceConsistentCasingInFileNames: true,
    noImplicitAny: false,
    strictBindCallApply: false,
    noFallthroughCasesInSwitch: false,
    types: ['node'],
  },
  include: ['src'],
};

function appSource(database: DatabaseId): string {
  const pid = {
    postgres: "(await this.db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid",
    mysql: "(await this.db.get<{ pid: number }>('SELECT CONNECTION_ID() AS pid'))!.pid",
    sqlite: "(await this.db.get('SELECT 1 AS one'), 0)",
  }[database];
  const poolOfOne = 'max: 1, acquireTimeoutMillis: 300, leakDetectionThresholdMillis: 1000';
  const small = {
    postgres: `new PostgresDatabase({ connectionString: process.env.DATABASE_URL, ${poolOfOne} })`,
    mysql: `new MysqlDatabase({ uri: process.env.DATABASE_URL, ${poolOfOne} })`,
    sqlite: `new SqliteDatabase({ path: process.env.SQLITE_PATH, ${poolOfOne} })`,
  }[database];
  const driver = { postgres: 'PostgresDatabase', mysql: 'MysqlDatabase', sqlite: 'SqliteDatabase' }[
    database
  ];
  const mark = `INSERT INTO marks (tag) VALUES (${database === 'postgres' ? '$1' : '?'})`;
  return `import 'reflect-metadata';
import {
  type CallHandler,
  type CanActivate,
  Controller,
  type ExecutionContext,
  Get,
  Injectable,
  Module,
  type MiddlewareConsumer,
  type NestInterceptor,
  type NestModule,
  type OnApplicationShutdown,
  Param,
  type PipeTransform,
  Post,
  Body,
  Req,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { from, mergeMap } from 'rxjs';
import { db } from './db/index.js';
import { DbHooksModule } from './db/nestjs.js';
import { Database } from './db/runtime.js';
import { ${driver} } from './db/runtime-${database}.js';

// The generated db, or a pool of one for the exhaustion tests.
const database = process.env.E2E_POOL_MAX ? ${small} : db;

type Seen = Record<string, { pid: number; inScope: boolean }>;
// On Fastify, middleware gets the raw request, and guards Fastify's request around it (raw).
interface Scoped { seen?: Seen; url: string; originalUrl?: string; raw?: Scoped }

/** Where each stage ran: its connection (PostgreSQL backend) and whether it held the request's. */
@Injectable()
class Probe {
  constructor(private readonly db: Database) {}
  async look(): Promise<{ pid: number; inScope: boolean }> {
    const pid = ${pid};
    return { pid, inScope: !this.db.isClosed() };
  }
  isDb(): boolean {
    return this.db === database;
  }
}

let guardRuns = 0;

@Injectable()
class ProbeGuard implements CanActivate {
  constructor(private readonly probe: Probe) {}
  async canActivate(context: ExecutionContext): Promise<boolean> {
    guardRuns++;
    const req = context.switchToHttp().getRequest<Scoped>();
    req.seen = { ...(req.raw ?? req).seen, guard: await this.probe.look() };
    return true;
  }
}

@Injectable()
class ProbeInterceptor implements NestInterceptor {
  constructor(private readonly probe: Probe) {}
  intercept(context: ExecutionContext, next: CallHandler) {
    const req = context.switchToHttp().getRequest<Scoped>();
    return from(this.probe.look()).pipe(
      mergeMap((before) => {
        req.seen!.interceptor = before;
        return next.handle();
      }),
      mergeMap(async (body: { seen: Seen }) => {
        body.seen.afterHandler = await this.probe.look();
        return body;
      }),
    );
  }
}

@Injectable()
class ProbePipe implements PipeTransform {
  constructor(private readonly probe: Probe) {}
  async transform(value: unknown) {
    return { value, at: await this.probe.look() };
  }
}

@Controller()
@UseGuards(ProbeGuard)
@UseInterceptors(ProbeInterceptor)
class ProbeController {
  constructor(private readonly probe: Probe) {}

  @Post('items/:id')
  async item(
    @Param('id', ProbePipe) id: { value: string; at: { pid: number; inScope: boolean } },
    @Body() body: { name: string },
    @Req() req: Scoped,
  ) {
    const seen: Seen = { ...req.seen, pipe: id.at, handler: await this.probe.look() };
    return { id: id.value, name: body.name, injectedIsDb: this.probe.isDb(), seen };
  }

  @Get('hold')
  async hold(@Req() req: Scoped) {
    await this.probe.look();
    await new Promise((resolve) => setTimeout(resolve, Number(new URL(req.url, 'http://x').searchParams.get('ms'))));
    await this.probe.look(); // refused when the client left meanwhile
    return { seen: {}, ok: true };
  }

  // Excluded from the global prefix (E2E_PREFIX).
  @Get('health')
  async health() {
    return { seen: {}, at: await this.probe.look() };
  }

  @Get('guard-runs')
  guardRuns() {
    return { seen: {}, guardRuns };
  }

  // With E2E_ATOMIC=1, in the request's own transaction: two writes, then success or a throw.
  @Get('tx/:tag')
  async tx(@Param('tag') tag: string, @Req() req: Scoped) {
    for (let i = 0; i < 2; i++) await database.run('${mark}', [tag]);
    database.onCommit(() => {
      committed.push(tag);
    });
    if (new URL(req.url, 'http://x').searchParams.has('fail')) throw new Error('boom (after two writes)');
    return { seen: {}, tag };
  }

  @Get('marks')
  async marks() {
    const rows = await database.query<{ tag: string }>('SELECT tag FROM marks');
    return { seen: {}, tags: rows.map((row) => row.tag).sort(), committed };
  }
}

/** The tags whose onCommit() callbacks ran. */
const committed: string[] = [];

// A feature module that does not import DbHooksModule: Database comes from the global module.
@Module({ providers: [Probe], exports: [Probe] })
class ProbeModule {}

@Module({
  imports: [
    DbHooksModule.forRoot({
      database,
      checkout: process.env.E2E_CHECKOUT === 'eager' ? 'eager' : 'lazy',
      atomic: process.env.E2E_ATOMIC === '1',
    }),
    ProbeModule,
  ],
  controllers: [ProbeController],
})
class AppModule implements NestModule, OnApplicationShutdown {
  constructor(private readonly probe: Probe) {}
  // The app owns the pool: once Nest has stopped the server and finished the requests in flight.
  onApplicationShutdown(): Promise<void> {
    return database.closePool();
  }
  // The app's own middleware: registered after DbHooksModule's (a global module's goes first).
  configure(consumer: MiddlewareConsumer) {
    consumer
      .apply((req: Scoped, _res: unknown, next: (error?: unknown) => void) => {
        // Express strips the mount path from req.url in middleware.
        if (!(req.originalUrl ?? req.url).startsWith('/items/')) return next();
        this.probe.look().then((middleware) => {
          req.seen = { middleware };
          next();
        }, next);
      })
      .forRoutes('*');
  }
}

async function main(): Promise<void> {
  const app =
    process.env.NEST_PLATFORM === 'fastify'
      ? await NestFactory.create(AppModule, new FastifyAdapter(), { logger: ['error', 'warn'] })
      : await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
  await database.run('CREATE TABLE IF NOT EXISTS marks (tag TEXT NOT NULL)');
  if (process.env.E2E_PREFIX) app.setGlobalPrefix('api', { exclude: ['health'] });
  app.enableShutdownHooks(['SIGTERM'], { useProcessExit: true });
  process.on('exit', () => console.log('pool at exit: ' + JSON.stringify(database.stats())));
  await app.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
  console.log('listening on ' + (await app.getUrl()));
}

void main();
`;
}

/** The generated files and the app above, compiled by tsc into build/. */
async function nestProject(database: DatabaseId): Promise<{ dir: string; compiled: Project }> {
  mkdirSync(join(repoRoot, '.tmp'), { recursive: true });
  const dir = mkdtempSync(join(repoRoot, '.tmp', 'nest-'));
  const write = (path: string, content: string) => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  };
  const style = { language: 'ts', moduleFormat: 'esm' } as const;
  for (const file of await renderGeneratedFiles({
    targets: ['nestjs'],
    database,
    style,
    dir: 'src/db',
    version: '0.0.0-e2e',
  })) {
    write(file.path, file.content);
  }
  write('src/main.ts', appSource(database));
  write('package.json', JSON.stringify({ name: 'nest-app', private: true, type: 'module' }));
  write('tsconfig.json', JSON.stringify(nestTsconfig, null, 2));
  linkDependencies(dir);
  try {
    await run(process.execPath, [binary('typescript', 'bin/tsc'), '-p', dir]);
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    assert.fail(`tsc under the nest new tsconfig:\n${stdout}${stderr}`);
  }
  // startApp runs <dir>/src/<entry>.js: build/ holds src/ compiled, and node_modules is found
  // one level up.
  const compiled: Project = {
    dir: join(dir, 'build'),
    ext: '.js',
    files: new Map(),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  return { dir, compiled };
}

interface Stage {
  pid: number;
  inScope: boolean;
}

async function stop(app: RunningApp): Promise<string> {
  const code = await app.stop();
  assert.equal(code, 0, `the app did not shut down cleanly:\n${app.output()}`);
  return app.output();
}

async function insideTheScope(
  project: Project,
  env: Record<string, string>,
  database: DatabaseId,
): Promise<void> {
  const app = await startApp(project, 'main', env);
  try {
    const replies = await Promise.all(
      [1, 2, 3].map((i) =>
        fetchReply(`${app.url}/items/${i}`, { method: 'POST', json: { name: `n${i}` } }),
      ),
    );
    const pids = new Set<number>();
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.status, 201, reply.body);
      const body = JSON.parse(reply.body) as {
        id: string;
        name: string;
        injectedIsDb: boolean;
        seen: Record<string, Stage>;
      };
      assert.equal(body.id, String(i + 1));
      assert.equal(body.name, `n${i + 1}`, 'the body did not reach the handler');
      assert.equal(body.injectedIsDb, true, 'the injected Database is not db');
      const stages = ['middleware', 'guard', 'interceptor', 'pipe', 'handler', 'afterHandler'];
      assert.deepEqual(Object.keys(body.seen).sort(), [...stages].sort());
      for (const stage of stages) {
        assert.equal(body.seen[stage]!.inScope, true, `${stage} ran outside the request scope`);
      }
      if (database !== 'sqlite') {
        const stagePids = new Set(stages.map((stage) => body.seen[stage]!.pid));
        assert.equal(stagePids.size, 1, `stages on different connections: ${reply.body}`);
        pids.add(body.seen.handler!.pid);
      }
    }
    // The three requests ran at once (each holds its connection until its response is sent).
    if (database !== 'sqlite') assert.equal(pids.size, 3, 'concurrent requests shared one');
  } finally {
    const output = await stop(app);
    assert.doesNotMatch(output, /ERROR/, output);
    assert.match(output, /pool at exit: \{"total":0,/, 'the pool was not closed on shutdown');
  }
}

async function exhaustion(project: Project, env: Record<string, string>, eager: boolean) {
  const app = await startApp(project, 'main', {
    ...env,
    E2E_POOL_MAX: '1',
    ...(eager && { E2E_CHECKOUT: 'eager' }),
  });
  try {
    const holding = fetchReply(`${app.url}/hold?ms=1500`);
    await sleep(300);
    const refused = await fetchReply(`${app.url}/items/1`, { method: 'POST', json: { name: 'x' } });
    assert.equal(refused.status, 503, refused.body);
    assert.equal(refused.headers['retry-after'], '1');
    const body = JSON.parse(refused.body) as Record<string, unknown>;
    assert.equal(body.statusCode, 503);
    assert.equal(body.error, 'Service Unavailable');
    assert.match(String(body.message), /No database connection became free within \d+ ms/);
    assert.equal((await holding).status, 200);
    // Leak detection names the request by its own path, not by where Nest mounted the middleware.
    assert.match(app.output(), /GET \/hold has held a database connection/);
    const after = await getJson<{ guardRuns: number }>(`${app.url}/guard-runs`);
    // Eager: refused in the middleware, so the guard ran for /hold and /guard-runs only.
    if (eager) assert.equal(after.guardRuns, 2, 'a guard ran for a request with no connection');
  } finally {
    const output = await stop(app);
    assert.doesNotMatch(
      output,
      /ERROR|PoolTimeoutError/,
      `a 503 was logged as an error:\n${output}`,
    );
  }
}

/** A client that leaves mid-request: its next statement is refused, and nothing is logged. */
async function clientLeaves(project: Project, env: Record<string, string>): Promise<void> {
  const app = await startApp(project, 'main', env);
  try {
    assert.equal(await send(`${app.url}/hold?ms=500`, { abortWhen: sleep(200) }), 'aborted');
    await sleep(700);
    assert.equal(
      (await fetchReply(`${app.url}/items/1`, { method: 'POST', json: { name: 'x' } })).status,
      201,
    );
  } finally {
    const output = await stop(app);
    assert.doesNotMatch(
      output,
      /ScopeReleasedError|ERROR/,
      `a client that left was logged:\n${output}`,
    );
  }
}

/** A global prefix with an excluded route, as many Nest apps have: both are in the scope. */
async function globalPrefix(project: Project, env: Record<string, string>): Promise<void> {
  const app = await startApp(project, 'main', { ...env, E2E_PREFIX: '1' });
  try {
    const item = await fetchReply(`${app.url}/api/items/7`, {
      method: 'POST',
      json: { name: 'p' },
    });
    assert.equal(item.status, 201, item.body);
    const seen = (JSON.parse(item.body) as { seen: Record<string, Stage> }).seen;
    assert.deepEqual(Object.keys(seen).sort(), [
      'afterHandler',
      'guard',
      'handler',
      'interceptor',
      'pipe',
    ]);
    for (const [stage, at] of Object.entries(seen)) {
      assert.equal(at.inScope, true, `${stage} ran outside the request scope`);
    }
    const health = await fetchReply(`${app.url}/health`);
    assert.equal(health.status, 200, health.body);
    const at = (JSON.parse(health.body) as { at: Stage }).at;
    assert.equal(at.inScope, true, 'a route excluded from the prefix ran outside the scope');
  } finally {
    await stop(app);
  }
}

/**
 * The module's `atomic` option: a request's writes commit when its handler succeeds (its
 * onCommit() callback runs), and roll back when it throws (Nest answers 500; no callback).
 */
async function atomicRequests(project: Project, env: Record<string, string>): Promise<void> {
  const app = await startApp(project, 'main', { ...env, E2E_ATOMIC: '1' });
  // Both platforms share the database: tags of their own.
  const [ok, failed] = ['ok', 'failed'].map((tag) => `${tag}-${env.NEST_PLATFORM}`);
  try {
    const done = await fetchReply(`${app.url}/tx/${ok}`);
    assert.equal(done.status, 200, done.body);
    const thrown = await fetchReply(`${app.url}/tx/${failed}?fail=1`);
    assert.equal(thrown.status, 500, thrown.body);
    const marks = await getJson<{ tags: string[]; committed: string[] }>(`${app.url}/marks`);
    assert.deepEqual(
      marks.tags.filter((tag) => tag === ok || tag === failed),
      [ok, ok],
    );
    assert.deepEqual(marks.committed, [ok]);
  } finally {
    await stop(app);
  }
}

/** SIGTERM with a request in flight: it is answered, then the pool closes and the app exits 0. */
async function shutdown(project: Project, env: Record<string, string>): Promise<void> {
  const app = await startApp(project, 'main', env);
  const inFlight = fetchReply(`${app.url}/hold?ms=600`);
  await sleep(200);
  const output = await stop(app);
  const reply = await inFlight;
  assert.equal(reply.status, 200, `the request in flight was cut: ${reply.status} ${reply.body}`);
  assert.match(output, /pool at exit: \{"total":0,/, `the pool was not closed:\n${output}`);
}

before(() => {
  installDependencies();
});

describe('NestJS as `nest new` sets it up', { concurrency: 2 }, () => {
  for (const database of ['sqlite', 'postgres', 'mysql'] as const) {
    // Not registered where the run has no MySQL (TEST_MYSQL=off), as in the other suites.
    if (database === 'mysql' && mysqlOff) continue;
    const skip = database === 'mysql' ? mysqlSkipReason : undefined;
    test(`decorators and injection by type, ${database}`, { skip }, async (t) => {
      const server =
        database === 'postgres'
          ? await createTestDatabase()
          : database === 'mysql'
            ? await createMysqlTestDatabase()
            : undefined;
      const { dir, compiled } = await nestProject(database);
      const base: Record<string, string> = server
        ? { DATABASE_URL: server.url }
        : { SQLITE_PATH: join(dir, 'app.db') };
      try {
        for (const platform of ['express', 'fastify']) {
          const env = { ...base, NEST_PLATFORM: platform };
          await t.test(`${platform}: guard, interceptor, pipe and handler share the scope`, () =>
            insideTheScope(compiled, env, database),
          );
          await t.test(`${platform}: exhaustion is a 503 from Nest's exception layer (lazy)`, () =>
            exhaustion(compiled, env, false),
          );
          await t.test(`${platform}: eager checkout answers 503 before any guard`, () =>
            exhaustion(compiled, env, true),
          );
          await t.test(`${platform}: a client that leaves is not logged`, () =>
            clientLeaves(compiled, env),
          );
          await t.test(`${platform}: a global prefix and a route excluded from it`, () =>
            globalPrefix(compiled, env),
          );
          await t.test(`${platform}: atomic: commit on success, rollback on a throw`, () =>
            atomicRequests(compiled, env),
          );
          await t.test(
            `${platform}: SIGTERM finishes the request in flight, then closes the pool`,
            () => shutdown(compiled, env),
          );
        }
      } finally {
        compiled.remove();
        await server?.drop();
      }
    });
  }
});

describe('a new NestJS app made by the CLI in an empty folder', { concurrency: 2 }, () => {
  for (const lang of ['ts', 'js'] as const) {
    test(`--lang ${lang}: npm start serves /users/:id; TypeScript passes tsc under its tsconfig`, async () => {
      mkdirSync(join(repoRoot, '.tmp'), { recursive: true });
      const parent = mkdtempSync(join(repoRoot, '.tmp', 'nest-new-'));
      const dir = join(parent, 'shop');
      try {
        const made = await runCli([
          '-C',
          dir,
          '-f',
          'nestjs',
          '--lang',
          lang,
          '-y',
          '--no-install',
        ]);
        assert.equal(made.code, 0, made.stderr);
        linkDependencies(dir);
        if (lang === 'ts') {
          // `npm run typecheck`, with the tsconfig.json the CLI wrote.
          await run(process.execPath, [binary('typescript', 'bin/tsc'), '-p', dir]).catch(
            (error: { stdout?: string }) => assert.fail(`tsc:\n${error.stdout}`),
          );
        }
        const project: Project = {
          dir,
          ext: lang === 'ts' ? '.ts' : '.js',
          files: new Map(),
          remove: () => {},
        };
        // What `npm start` runs (tsx src/app.ts for TypeScript).
        const app = await startApp(project, 'app', { SQLITE_PATH: join(dir, 'app.db') });
        try {
          const found = await fetchReply(`${app.url}/users/1`);
          assert.equal(found.status, 200, found.body);
          assert.deepEqual(JSON.parse(found.body), { id: 1, name: 'Ada Lovelace' });
          assert.equal((await fetchReply(`${app.url}/users/999`)).status, 404);
        } finally {
          await stop(app);
        }
      } finally {
        rmSync(parent, { recursive: true, force: true });
      }
    });
  }
});
