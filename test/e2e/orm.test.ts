// End to end, --orm: for Kysely and Drizzle (the real packages from npm) on each database their
// templates bind (MySQL where the run has a server), the generated <dir>/<orm> file in a fresh
// project with Express (TypeScript, JavaScript ESM and CommonJS), Fastify, Koa or Hono
// (TypeScript), type-checked under strict, run over real HTTP. Checks: an ORM query runs on
// the request's connection (the same backend pid or connection id, the same connection's temp
// table on SQLite) and checks it out when it comes first; it commits and rolls back with
// db.atomic(); the ORM's own transaction is the request's transaction (db.atomic() nests inside
// it) or a savepoint inside db.atomic() or inside another, and its isolation level and access
// mode reach the BEGIN; outside a request it borrows one connection per statement and per
// transaction; a pool timeout in its query answers 503; a client that leaves mid ORM query gets
// its connection rolled back and returned, and the request's later ORM queries are refused.
//
// E2E_FILTER=kysely (a substring of the case names) runs some of the cases only.
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import ejs from 'ejs';
import { toProjectLanguage } from '../../src/cli/language.ts';
import {
  type DatabaseId,
  databaseIds,
  findOrm,
  type OrmId,
  ormIds,
} from '../../src/cli/targets.ts';
import { mysqlOff } from '../runtime/databases.ts';
import { createMysqlTestDatabase } from '../support/mariadb.ts';
import { createTestDatabase, idleInTransaction } from '../support/postgres.ts';
import { installDependencies, linkDependencies, repoRoot } from './support/deps.ts';
import { getJson, send } from './support/http.ts';
import {
  generatedProject,
  type Project,
  startApp,
  typeCheck,
  type Variant,
} from './support/project.ts';

interface OrmCase {
  orm: OrmId;
  database: DatabaseId;
  /** SQLite on Node's built-in driver instead of better-sqlite3. */
  driver?: 'node:sqlite';
  target: 'express' | 'fastify' | 'koa' | 'hono';
  variant: Variant;
}

const cases: OrmCase[] = [];
// Prisma's client is generated per project: its own file, prisma.test.ts.
for (const orm of ormIds.filter((id) => id !== 'prisma')) {
  // The databases its template has a binding for; MySQL only where the run has a server.
  for (const database of databaseIds.filter(
    (id) =>
      (findOrm(orm)!.databases as readonly string[]).includes(id) && (id !== 'mysql' || !mysqlOff),
  )) {
    for (const variant of ['ts', 'js-esm', 'js-cjs'] as const) {
      cases.push({ orm, database, target: 'express', variant });
    }
    for (const target of ['fastify', 'koa', 'hono'] as const) {
      cases.push({ orm, database, target, variant: 'ts' });
    }
  }
  for (const variant of ['ts', 'js-esm', 'js-cjs'] as const) {
    cases.push({ orm, database: 'sqlite', driver: 'node:sqlite', target: 'express', variant });
  }
}
const caseName = (c: OrmCase) =>
  `${c.orm} × ${c.driver ?? c.database} × ${c.target} × ${c.variant}`;
const filter = process.env.E2E_FILTER;
const selected = filter ? cases.filter((c) => caseName(c).includes(filter)) : cases;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function createOrmProject(c: OrmCase): Promise<Project> {
  const { dir, style, ext, files, write } = await generatedProject('e2e-orm-', c.variant, {
    targets: [c.target],
    orms: [c.orm],
    database: c.database,
    driver: c.driver,
  });
  const template = join(repoRoot, 'test', 'e2e', 'apps', 'orm', 'app.ts.ejs');
  const source = ejs.render(readFileSync(template, 'utf8'), { ...c }, { filename: template });
  write(`src/app${ext}`, await toProjectLanguage(source, style));
  const type = style.moduleFormat === 'cjs' ? 'commonjs' : 'module';
  write('package.json', `${JSON.stringify({ name: 'e2e-orm', private: true, type })}\n`);
  if (style.language === 'ts') {
    const compilerOptions = {
      target: 'ES2022',
      lib: ['ES2022'],
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      verbatimModuleSyntax: true,
      noUnusedLocals: true,
      noUnusedParameters: true,
      types: ['node'],
    };
    write('tsconfig.json', `${JSON.stringify({ compilerOptions, include: ['src'] })}\n`);
  }
  linkDependencies(dir);
  return { dir, ext, files, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

interface Stats {
  inUse: number;
  waiting: number;
}

before(() => installDependencies());

describe('--orm: the ORM runs on the request connection', { concurrency: 2 }, () => {
  for (const c of selected) {
    test(caseName(c), async () => {
      const project = await createOrmProject(c);
      const postgres = c.database === 'postgres' ? await createTestDatabase() : undefined;
      const mysql = c.database === 'mysql' ? await createMysqlTestDatabase() : undefined;
      try {
        if (project.ext === '.ts') {
          const errors = await typeCheck(project);
          assert.equal(errors, undefined, `tsc --strict:\n${errors}`);
        }
        const server = postgres ?? mysql;
        const env =
          server !== undefined
            ? { DATABASE_URL: server.url }
            : { SQLITE_PATH: join(project.dir, 'app.db') };
        const app = await startApp(project, 'app', env);
        const get = <T>(path: string) => getJson<T>(`${app.url}${path}`);
        const count = async () => (await get<{ n: number }>('/count/x')).n;
        const released = async (what: string) => {
          let stats: Stats | undefined;
          for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(25)) {
            stats = await get<Stats>('/__stats');
            if (stats.inUse === 0 && stats.waiting === 0) break;
          }
          assert.equal(stats?.inUse, 0, `${what}: a connection is still in use\n${app.output()}`);
          if (postgres) assert.equal(await idleInTransaction(postgres.url), 0, what);
        };
        try {
          // Outside a request (at start-up): a statement borrows and returns its connection; a
          // transaction holds one, commits and rolls back.
          assert.deepEqual(await get('/__outside'), {
            added: 1,
            afterStatement: 0,
            inTransaction: { same: true, inUse: 1 },
            rolledBack: 'Error',
            afterAll: 0,
          });

          // In a request, the ORM's first query checks the connection out; db's run on it too.
          assert.deepEqual(await get('/same/a'), { same: true, inUse: 1 });
          await released('after /same');

          let n = await count();
          assert.deepEqual(await get('/atomic-ok/a'), { same: true });
          assert.equal(await count(), n + 2, 'db.atomic() committed both');
          n += 2;
          assert.deepEqual(await get('/atomic-fail/a'), { error: 'Error' });
          assert.equal(await count(), n, 'db.atomic() rolled back the ORM insert too');

          assert.deepEqual(await get('/tx-ok/a'), { same: true, inUse: 1 });
          assert.equal(await count(), n + 4, "the ORM's transaction committed db's inserts too");
          n += 4;
          assert.deepEqual(await get('/tx-fail/a'), { error: 'Error' });
          assert.equal(await count(), n, "the ORM's transaction rolled back db's insert too");

          assert.deepEqual(await get('/nested-in-atomic/a'), { inner: 'Error', same: true });
          assert.equal(await count(), n + 2, 'only the failed savepoint was rolled back');
          n += 2;
          assert.deepEqual(await get('/nested-in-tx/a'), { inner: 'Error' });
          assert.equal(await count(), n + 1, 'only the nested transaction was rolled back');
          n += 1;
          assert.deepEqual(await get('/on-commit/a'), { ran: ['before the commit', 'committed'] });
          assert.equal(await count(), n + 1);
          n += 1;
          await released('after the transactions');

          const extras = await get<Record<string, unknown>>('/extras/a');
          const expected: Record<string, unknown> =
            c.orm === 'kysely'
              ? {
                  startTransaction: 'TransactionInAtomic',
                  nestedRefusal: 'TransactionInAtomic after 1 run',
                  inserted: 1,
                  plugin: true,
                  duringStream: 'ConnectionStateError',
                  streamed: 3,
                  afterStream: 'ran',
                }
              : c.database === 'postgres'
                ? { join: true, relational: true, timestamp: true }
                : c.database === 'mysql'
                  ? { join: true, relational: true, timestamp: true, insertId: true }
                  : { join: true, relational: true, batch: true, get: true };
          if (c.database === 'postgres') expected.isolation = 'serializable';
          if (c.database === 'mysql') expected.readOnly = 1792; // a write in a read only transaction
          assert.deepEqual(extras, expected);
          n = await count();
          await released('after the extras');

          // A pool timeout inside the ORM's query: the adapter answers 503, as for db's own.
          const unavailable = await fetch(`${app.url}/unavailable/a`);
          const body = await unavailable.text();
          assert.equal(unavailable.status, 503, body);
          assert.doesNotMatch(body, /DrizzleQueryError|Failed query/);

          // The client leaves while the ORM's statement runs inside db.atomic().
          let started: (value?: unknown) => void = () => {};
          const ready = new Promise((resolve) => {
            started = resolve;
          });
          const poll = (async () => {
            for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(10)) {
              const event = await get<{ started?: boolean }>('/__events/gone');
              if (event.started) return started();
            }
          })();
          assert.equal(await send(`${app.url}/slow/gone`, { abortWhen: ready }), 'aborted');
          await poll;
          let event: Record<string, unknown> = {};
          for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(20)) {
            event = await get('/__events/gone');
            if (event.done) break;
          }
          assert.equal(event.error, 'ScopeReleasedError', JSON.stringify(event));
          assert.equal(event.after, 'ScopeReleasedError', 'a later ORM query is refused');
          if (server) assert.equal(event.slowDone, true, 'the query in flight was waited for');
          await released('after the client left');
          assert.equal(await count(), n, 'the abandoned transaction was rolled back');

          const code = await app.stop();
          assert.equal(code, 0, `the app did not shut down cleanly:\n${app.output()}`);
          assert.doesNotMatch(app.output(), /could not return/);
        } finally {
          await app.stop();
        }
      } finally {
        project.remove();
        await postgres?.drop();
        await mysql?.drop();
      }
    });
  }
});
