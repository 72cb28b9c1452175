// Apps made by the real scaffolders from npm (test/e2e/deps: fastify-cli's `generate --lang=ts`
// and `generate --standardlint`, express-generator's `--no-view`, @nestjs/cli's `new`), offline,
// their node_modules symlinks to the workspace's packages; create-db-hooks run on them as README
// says, a DB route and a test added in the app's own style, then the app's own `npm test`
// (fastify-cli's: tsc, the tests' type check, c8 and node --test under ts-node; with
// --standardlint, `standard` first; Nest's: vitest) and lint (Nest's: oxlint, type-aware), on a
// working database and on one that is down (503, nothing internal shown).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { describe, test as nodeTest } from 'node:test';
import { promisify } from 'node:util';
import { runCli, writeTree } from '../cli/helpers.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { binary, installDependencies, linkDependencies, repoRoot } from './support/deps.ts';

const execFileAsync = promisify(execFile);

// E2E_FILTER=nestjs (a substring of the test names) runs some of the tests only.
const filter = process.env.E2E_FILTER;
function test(name: string, fn: () => Promise<void>): void {
  if (!filter || name.includes(filter)) nodeTest(name, fn);
}

/** Runs a command in the project; rejects with its output when it fails. */
async function run(dir: string, args: string[], env: Record<string, string> = {}) {
  try {
    return await execFileAsync(process.execPath, args, {
      cwd: dir,
      // Not as a subtest of this run: node --test in the app reports on its own.
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, ...env },
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    assert.fail(`${args.join(' ')} failed:\n${stdout}\n${stderr}`);
  }
}

/**
 * The app's own `npm test` (or another of its scripts), under the Node.js that runs this file
 * (its tools start `node` from PATH). Its tools' binaries (tsc, c8, standard, vitest, oxlint) are
 * the repository's, which npm puts on PATH too.
 */
async function npmTest(dir: string, env: Record<string, string>, script = 'test') {
  const path = [dirname(process.execPath), process.env.PATH].join(delimiter);
  try {
    const { stdout, stderr } = await execFileAsync('npm', ['run', script], {
      cwd: dir,
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, PATH: path, ...env },
      maxBuffer: 16 * 1024 * 1024,
    });
    return `${stdout}\n${stderr}`;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    assert.fail(`npm run ${script} failed in ${dir}:\n${stdout}\n${stderr}`);
  }
}

/** node --test's summary (tap or spec reporter): every test passed, and how many ran. */
function assertAllPassed(output: string, count: number): void {
  assert.match(output, /^(?:#|ℹ) fail 0$/m, output);
  assert.equal(/^(?:#|ℹ) pass (\d+)$/m.exec(output)?.[1], String(count), output);
}

/** vitest's summary: every test passed, and how many ran. */
function assertVitestPassed(output: string, count: number): void {
  assert.match(output, new RegExp(`^\\s*Tests\\s+${count} passed \\(${count}\\)$`, 'm'), output);
}

/** Runs a scaffolder from test/e2e/deps in `parent`, making `parent/app`; returns that path. */
async function scaffold(
  parent: string,
  bin: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<string> {
  await run(parent, [bin, ...args, 'app'], env);
  return join(parent, 'app');
}

function newDir(prefix: string): string {
  mkdirSync(join(repoRoot, '.tmp'), { recursive: true });
  return mkdtempSync(join(repoRoot, '.tmp', prefix));
}

/** Inserts `text` after the line that matches `after` in the project's file. */
function insertAfter(file: string, after: RegExp, text: string): void {
  const source = readFileSync(file, 'utf8');
  assert.match(source, after, `${file} has no line ${after}`);
  writeFileSync(
    file,
    source.replace(after, (line) => `${line}\n${text}`),
  );
}

/** The Next steps line the CLI printed for this import, taken verbatim. */
function importLineFrom(stdout: string, specifier: RegExp): string {
  const line = stdout.split('\n').find((l) => specifier.test(l));
  assert.ok(line, `Next steps name no import matching ${specifier}:\n${stdout}`);
  return line.trim();
}

/** The lines of Next steps from the one matching `first` to the one matching `last`, as code. */
function nextStepBlock(stdout: string, first: RegExp, last: RegExp): string {
  const lines = stdout.split('\n');
  const start = lines.findIndex((line) => first.test(line));
  const end = lines.findIndex((line, i) => i > start && last.test(line));
  assert.ok(start !== -1 && end !== -1, `Next steps have no block from ${first}:\n${stdout}`);
  return lines
    .slice(start, end + 1)
    .map((line) => line.slice(6))
    .join('\n');
}

const databases = ['sqlite', 'postgres'] as const;
type Database = (typeof databases)[number];

/** The database the app works on, and one that cannot be reached or opened. */
async function databaseEnv(
  database: Database,
  dir: string,
): Promise<{ up: Record<string, string>; down: Record<string, string>; drop(): Promise<void> }> {
  if (database === 'sqlite') {
    return {
      up: { SQLITE_PATH: join(dir, 'app.db') },
      down: { SQLITE_PATH: join(dir, 'missing', 'app.db') },
      drop: async () => {},
    };
  }
  const created = await createTestDatabase();
  return {
    up: { DATABASE_URL: created.url },
    down: { DATABASE_URL: 'postgres://app:s3cret@127.0.0.1:1/app' },
    drop: () => created.drop(),
  };
}

/** What a client must never see in a 503 from a database that is down. */
const internals = ['SQLITE', 'unable to open', 'directory', 'ECONNREFUSED', '127.0.0.1', 's3cret'];

/** The DB route and its tests, in fastify-cli's style: one app per test, closed after it. */
function fastifyUsers(database: Database): Record<string, string> {
  const p = database === 'sqlite' ? '?' : '$1';
  return {
    'src/routes/users/index.ts': `import { type FastifyPluginAsync } from 'fastify'
import { db } from '../../db/index'

const users: FastifyPluginAsync = async (fastify, opts): Promise<void> => {
  fastify.get<{ Params: { id: string } }>('/:id', async function (request, reply) {
    const user = await db.get('SELECT id, name FROM users WHERE id = ${p}', [Number(request.params.id)])
    if (user === undefined) return await reply.code(404).send({ error: 'no such user' })
    return user
  })
}

export default users
`,
    'test/routes/users.test.ts': `import { after, before, test } from 'node:test'
import * as assert from 'node:assert'
import { build } from '../helper'
import { db } from '../../src/db/index'

// DB_DOWN=1: the same requests with the database down answer 503, saying nothing internal.
const down = process.env.DB_DOWN === '1'

before(async () => {
  if (down) return
  await db.run('CREATE TABLE IF NOT EXISTS users (id integer PRIMARY KEY, name text NOT NULL)')
  await db.run("INSERT INTO users (id, name) VALUES (1, 'Ada') ON CONFLICT (id) DO NOTHING")
})

// The app owns the pool: closed once, after the last app.
after(async () => {
  await db.closePool()
})

async function expect (t: Parameters<typeof build>[0], id: number, status: number, body: unknown) {
  const app = await build(t)
  const res = await app.inject({ url: \`/users/\${id}\` })
  if (down) {
    assert.strictEqual(res.statusCode, 503, res.payload)
    assert.strictEqual(JSON.parse(res.payload).message, 'The database is unavailable. Try again shortly.')
    for (const internal of ${JSON.stringify(internals)}) {
      assert.ok(!res.payload.includes(internal), res.payload)
    }
    return
  }
  assert.strictEqual(res.statusCode, status, res.payload)
  assert.deepStrictEqual(JSON.parse(res.payload), body)
}

test('a user', async (t) => {
  await expect(t, 1, 200, { id: 1, name: 'Ada' })
})

test('the same user, from the next app', async (t) => {
  await expect(t, 1, 200, { id: 1, name: 'Ada' })
})

test('no such user', async (t) => {
  await expect(t, 2, 404, { error: 'no such user' })
})
`,
  };
}

function expressUsers(database: Database): Record<string, string> {
  const p = database === 'sqlite' ? '?' : '$1';
  return {
    'test/users.test.js': `const { after, before, test } = require('node:test');
const assert = require('node:assert');
const app = require('../app');
const { db } = require('../db/index.js');

const down = process.env.DB_DOWN === '1';
let server;
let base;

before(async () => {
  server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  base = 'http://127.0.0.1:' + server.address().port;
  if (down) return;
  await db.run('CREATE TABLE IF NOT EXISTS users (id integer PRIMARY KEY, name text NOT NULL)');
  await db.run("INSERT INTO users (id, name) VALUES (1, 'Ada') ON CONFLICT (id) DO NOTHING");
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await db.closePool();
});

test('a user, or 503 with the database down', async () => {
  const res = await fetch(base + '/users/1');
  const body = await res.text();
  if (down) {
    assert.strictEqual(res.status, 503, body);
    for (const internal of ${JSON.stringify(internals)}) {
      assert.ok(!body.includes(internal), body);
    }
    return;
  }
  assert.strictEqual(res.status, 200, body);
  assert.deepStrictEqual(JSON.parse(body), { id: 1, name: 'Ada' });
});
`,
    route: `router.get('/:id', function(req, res, next) {
  db.get('SELECT id, name FROM users WHERE id = ${p}', [Number(req.params.id)])
    .then(function(user) {
      if (user === undefined) return res.status(404).json({ error: 'no such user' });
      res.json(user);
    })
    .catch(next);
});
`,
  };
}

/** fastify-cli's JavaScript app, in its style (and standard's): one app per test. */
function fastifyJsUsers(database: Database): Record<string, string> {
  const p = database === 'sqlite' ? '?' : '$1';
  return {
    'routes/users/index.js': `'use strict'

const { db } = require('../../db/index.js')

module.exports = async function (fastify, opts) {
  fastify.get('/:id', async function (request, reply) {
    const user = await db.get('SELECT id, name FROM users WHERE id = ${p}', [Number(request.params.id)])
    if (user === undefined) return reply.code(404).send({ error: 'no such user' })
    return user
  })
}
`,
    'test/routes/users.test.js': `'use strict'

const { after, before, test } = require('node:test')
const assert = require('node:assert')
const { build } = require('../helper')
const { db } = require('../../db/index.js')

const down = process.env.DB_DOWN === '1'

before(async () => {
  if (down) return
  await db.run('CREATE TABLE IF NOT EXISTS users (id integer PRIMARY KEY, name text NOT NULL)')
  await db.run("INSERT INTO users (id, name) VALUES (1, 'Ada') ON CONFLICT (id) DO NOTHING")
})

after(async () => {
  await db.closePool()
})

async function expect (t, id, status, body) {
  const app = await build(t)
  const res = await app.inject({ url: '/users/' + id })
  if (down) {
    assert.strictEqual(res.statusCode, 503, res.payload)
    for (const internal of ${JSON.stringify(internals).replaceAll('"', "'").replaceAll(',', ', ')}) {
      assert.ok(!res.payload.includes(internal), res.payload)
    }
    return
  }
  assert.strictEqual(res.statusCode, status, res.payload)
  assert.deepStrictEqual(JSON.parse(res.payload), body)
}

test('a user', async (t) => {
  await expect(t, 1, 200, { id: 1, name: 'Ada' })
})

test('the same user, from the next app', async (t) => {
  await expect(t, 1, 200, { id: 1, name: 'Ada' })
})

test('no such user', async (t) => {
  await expect(t, 2, 404, { error: 'no such user' })
})
`,
  };
}

/**
 * The DB route and its e2e test in @nestjs/cli's style: the controller gets `Database`
 * injected by type (emitDecoratorMetadata, as the scaffold's AppController gets AppService);
 * a testing module and app per test (beforeEach), closed after it (afterEach).
 */
function nestUsers(database: Database): Record<string, string> {
  const p = database === 'sqlite' ? '?' : '$1';
  return {
    'src/users.controller.ts': `import { Controller, Get, NotFoundException, Param, ParseIntPipe } from '@nestjs/common';
import { Database } from './db/runtime.js';

interface User {
  id: number;
  name: string;
}

@Controller('users')
export class UsersController {
  constructor(private readonly db: Database) {}

  @Get(':id')
  async findOne(@Param('id', ParseIntPipe) id: number): Promise<User> {
    const user = await this.db.get<User>('SELECT id, name FROM users WHERE id = ${p}', [id]);
    if (user === undefined) throw new NotFoundException('no such user');
    return user;
  }
}
`,
    'test/users.e2e-spec.ts': `import { Test, TestingModule } from '@nestjs/testing';
import { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { App } from 'supertest/types.js';
import { AppModule } from './../src/app.module.js';
import { db } from './../src/db/index.js';

// DB_DOWN=1: the same requests with the database down answer 503, saying nothing internal.
const down = process.env.DB_DOWN === '1';

describe('UsersController (e2e)', () => {
  let app: INestApplication<App>;

  beforeAll(async () => {
    if (down) return;
    await db.run('CREATE TABLE IF NOT EXISTS users (id integer PRIMARY KEY, name text NOT NULL)');
    await db.run("INSERT INTO users (id, name) VALUES (1, 'Ada') ON CONFLICT (id) DO NOTHING");
  });

  beforeEach(async () => {
    const moduleFixture: TestingModule = await Test.createTestingModule({
      imports: [AppModule],
    }).compile();

    app = moduleFixture.createNestApplication();
    await app.init();
  });

  async function expectUser(id: number, status: number, body: object) {
    const res = await request(app.getHttpServer()).get(\`/users/\${id}\`);
    if (down) {
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ message: 'The database is unavailable. Try again shortly.' });
      for (const internal of ${JSON.stringify(internals)}) expect(res.text).not.toContain(internal);
      return;
    }
    expect(res.status).toBe(status);
    expect(res.body).toMatchObject(body);
  }

  it('/users/1 (GET)', () => expectUser(1, 200, { id: 1, name: 'Ada' }));

  it('/users/1 (GET), from the next app', () => expectUser(1, 200, { id: 1, name: 'Ada' }));

  it('/users/2 (GET): no such user', () => expectUser(2, 404, { message: 'no such user' }));

  afterEach(async () => {
    await app.close();
  });

  // The app owns the pool: closed once, after the last app.
  afterAll(async () => {
    await db.closePool();
  });
});
`,
  };
}

describe('apps made by real scaffolders, with create-db-hooks added as README says', () => {
  installDependencies();

  for (const database of databases) {
    test(`fastify-cli --lang=ts (CommonJS, ts-node) on ${database}: tsc and the app's tests pass; database down → 503`, async () => {
      const parent = newDir('fastify-cli-');
      const env = await databaseEnv(database, parent);
      try {
        const dir = await scaffold(parent, binary('fastify-cli', 'cli.js'), [
          'generate',
          '--lang=ts',
        ]);
        const made = await runCli([
          '-C',
          dir,
          '-f',
          'fastify',
          '-d',
          database,
          '--yes',
          '--no-install',
        ]);
        assert.equal(made.code, 0, made.stderr);
        // Next steps name the plugin with a specifier ts-node loads: no `.js` in CommonJS.
        const importLine = importLineFrom(made.stdout, /from '\.\/db\/fastify'/);
        assert.equal(importLine, "import { dbHooks } from './db/fastify';");
        const adapter = readFileSync(join(dir, 'src/db/fastify.ts'), 'utf8');
        assert.match(adapter, /^\/\/ {3}import \{ dbHooks \} from '\.\/db\/fastify';$/m);
        assert.doesNotMatch(adapter, /require\(|from '\.\/[\w-]+\.js'/);

        // The route as fastify-cli's autoload finds it (src/routes/users/index.ts → /users), the
        // hooks registered where the scaffold says custom code goes, ahead of the autoloads.
        writeTree(dir, fastifyUsers(database));
        const app = join(dir, 'src/app.ts');
        insertAfter(app, /^import \{ FastifyPluginAsync.*$/m, importLine);
        insertAfter(
          app,
          /^ {2}\/\/ Place here your custom code!$/m,
          '  await fastify.register(dbHooks)',
        );
        linkDependencies(dir);
        // `npm test`: build:ts, the tests' type check (tsc -p test/tsconfig.json), then c8 and
        // node --test under ts-node: test/helper.ts (the glob takes it as a test file), the
        // scaffold's three tests and the three added. ts-node only transpiles: the script's tsc
        // has checked the same files, and ts-node's own check in each test process took a
        // minute and a half of the run.
        const transpile = { TS_NODE_TRANSPILE_ONLY: 'true' };
        assertAllPassed(await npmTest(dir, { ...env.up, ...transpile }), 7);
        assertAllPassed(await npmTest(dir, { ...env.down, ...transpile, DB_DOWN: '1' }), 7);
      } finally {
        await env.drop();
        rmSync(parent, { recursive: true, force: true });
      }
    });
  }

  for (const database of databases) {
    test(`express-generator --no-view (CommonJS JavaScript, Express 4) on ${database}: its tests pass; database down → 503`, async () => {
      const parent = newDir('express-generator-');
      const env = await databaseEnv(database, parent);
      try {
        const dir = await scaffold(parent, binary('express-generator', 'bin/express-cli.js'), [
          '--no-view',
        ]);
        const made = await runCli([
          '-C',
          dir,
          '-f',
          'express',
          '-d',
          database,
          '--yes',
          '--no-install',
        ]);
        assert.equal(made.code, 0, made.stderr);
        const importLine = importLineFrom(made.stdout, /require\('\.\/db\/express\.js'\)/);
        const { route, ...files } = expressUsers(database);
        writeTree(dir, files);
        // Express 4: Next steps also give the entry file an unhandledRejection listener.
        const listener = nextStepBlock(made.stdout, /isGoneClient \} = require/, /^ {6}\}\);$/);
        insertAfter(
          join(dir, 'app.js'),
          /^var app = express\(\);$/m,
          `${importLine}\n${listener}\napp.use(dbHooks());`,
        );
        const users = join(dir, 'routes/users.js');
        insertAfter(
          users,
          /^var router = express\.Router\(\);$/m,
          "var { db } = require('../db/index.js');",
        );
        insertAfter(users, /^}\);$/m, `\n${route}`);
        // The scaffold has no tests: node:test's, as its own `npm test`.
        const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
        manifest.scripts.test = 'node --test';
        writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
        linkDependencies(dir, { express: 'express4' });
        assertAllPassed(await npmTest(dir, env.up), 1);
        assertAllPassed(await npmTest(dir, { ...env.down, DB_DOWN: '1' }), 1);
      } finally {
        await env.drop();
        rmSync(parent, { recursive: true, force: true });
      }
    });
  }

  for (const database of databases) {
    test(`fastify-cli --standardlint (CommonJS JavaScript, standard) on ${database}: standard passes on the generated files, the app's tests pass; database down → 503`, async () => {
      const parent = newDir('fastify-standard-');
      const env = await databaseEnv(database, parent);
      try {
        const dir = await scaffold(parent, binary('fastify-cli', 'cli.js'), [
          'generate',
          '--standardlint',
        ]);
        // fastify-cli 8 writes `pretest: standard` but leaves standard out of devDependencies
        // (its own has none): added as `npm install -D standard` would.
        const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
        assert.equal(manifest.scripts.pretest, 'standard');
        manifest.devDependencies = { ...manifest.devDependencies, standard: '^17.1.2' };
        writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
        // Installed before create-db-hooks runs, as README says: it formats with standard's fixes.
        linkDependencies(dir);
        const made = await runCli([
          '-C',
          dir,
          '-f',
          'fastify',
          '-d',
          database,
          '--yes',
          '--no-install',
        ]);
        assert.equal(made.code, 0, made.stderr);
        // Next steps print the line with a semicolon: pasted as standard wants it, without.
        const importLine = importLineFrom(made.stdout, /require\('\.\/db\/fastify\.js'\)/);
        writeTree(dir, fastifyJsUsers(database));
        const app = join(dir, 'app.js');
        insertAfter(app, /^const AutoLoad = require.*$/m, importLine.replace(/;$/, ''));
        insertAfter(app, /^ {2}\/\/ Place here your custom code!$/m, '  fastify.register(dbHooks)');
        // `npm test`: its pretest, standard, over the project (the generated files included),
        // then node --test: the scaffold's three tests and the three added.
        assertAllPassed(await npmTest(dir, env.up), 6);
        assertAllPassed(await npmTest(dir, { ...env.down, DB_DOWN: '1' }), 6);
      } finally {
        await env.drop();
        rmSync(parent, { recursive: true, force: true });
      }
    });
  }

  for (const database of databases) {
    test(`@nestjs/cli new (NestJS 12, ESM TypeScript, vitest, oxlint, Prettier) on ${database}: tsc, its tests, e2e tests and lint pass; database down → 503`, async () => {
      const parent = newDir('nest-cli-');
      const env = await databaseEnv(database, parent);
      try {
        // @nestjs/schematics wants TypeScript 6 (a peer): npm nests both under @nestjs/cli,
        // where its schematics runner (hoisted) does not look; NODE_PATH shows it the way. Its
        // own `git init` stays: oxlint honors the .gitignore of the repository it runs in.
        const nest = binary('@nestjs/cli', 'bin/nest.js');
        const dir = await scaffold(
          parent,
          nest,
          [
            'new',
            '--skip-install',
            '--package-manager',
            'npm',
            '--no-interactive',
            '--no-observe',
            '--skip-skills',
          ],
          { NODE_PATH: binary('@nestjs/cli', 'node_modules') },
        );
        const made = await runCli([
          '-C',
          dir,
          '-f',
          'nestjs',
          '-d',
          database,
          '--yes',
          '--no-install',
        ]);
        assert.equal(made.code, 0, made.stderr);
        const importLine = importLineFrom(made.stdout, /from '\.\/db\/nestjs\.js'/);
        assert.equal(importLine, "import { DbHooksModule } from './db/nestjs.js';");
        writeTree(dir, nestUsers(database));
        const module = join(dir, 'src/app.module.ts');
        insertAfter(
          module,
          /^import \{ AppService \} from '\.\/app\.service\.js';$/m,
          `${importLine}\nimport { UsersController } from './users.controller.js';`,
        );
        const source = readFileSync(module, 'utf8');
        writeFileSync(
          module,
          source
            .replace('imports: [],', 'imports: [DbHooksModule],')
            .replace(
              'controllers: [AppController],',
              'controllers: [AppController, UsersController],',
            ),
        );
        linkDependencies(dir);
        // The app's TypeScript is the 6 it declares, the one nested under @nestjs/cli.
        rmSync(join(dir, 'node_modules/typescript'));
        symlinkSync(
          binary('@nestjs/cli', 'node_modules/typescript'),
          join(dir, 'node_modules/typescript'),
          'dir',
        );
        // The added files formatted as the app's `npm run format` would; then the whole of
        // src/ and test/ (the generated files too) checked against its .prettierrc.
        const prettier = binary('prettier', 'bin/prettier.cjs');
        const added = ['src/app.module.ts', 'src/users.controller.ts', 'test/users.e2e-spec.ts'];
        await run(dir, [prettier, '--write', ...added]);
        await run(dir, [prettier, '--check', 'src/**/*.ts', 'test/**/*.ts']);
        // tsc over src/ and test/ (the build's tsconfig leaves the tests out), then `npm test`
        // (the unit spec), `npm run test:e2e` (the scaffold's e2e and the three added), `npm
        // run lint` (oxlint --type-aware: no-floating-promises and the rest on every file).
        await run(dir, [
          binary('@nestjs/cli', 'node_modules/typescript/bin/tsc'),
          '--noEmit',
          '-p',
          '.',
        ]);
        const vitest = { NO_COLOR: '1' };
        assertVitestPassed(await npmTest(dir, { ...env.up, ...vitest }), 1);
        assertVitestPassed(await npmTest(dir, { ...env.up, ...vitest }, 'test:e2e'), 4);
        const down = { ...env.down, ...vitest, DB_DOWN: '1' };
        assertVitestPassed(await npmTest(dir, down, 'test:e2e'), 4);
        const lint = await npmTest(dir, {}, 'lint');
        assert.match(lint, /Found 0 warnings and 0 errors\./, lint);
      } finally {
        await env.drop();
        rmSync(parent, { recursive: true, force: true });
      }
    });
  }

  // The import specifiers follow the module format: `./index` in a CommonJS package, whatever
  // its tsconfig, `./index.js` in an ES module one. Each must pass tsc under that tsconfig, and
  // the CommonJS ones must load under ts-node as they are.
  const tsconfigs = [
    { name: 'commonjs, node10', type: undefined, module: 'commonjs', resolution: 'node10' },
    {
      name: 'nodenext, CommonJS package',
      type: undefined,
      module: 'nodenext',
      resolution: 'nodenext',
    },
    { name: 'esnext, bundler', type: undefined, module: 'esnext', resolution: 'bundler' },
    {
      name: 'nodenext, ES module package',
      type: 'module',
      module: 'nodenext',
      resolution: 'nodenext',
    },
  ];
  test('generated TypeScript imports pass tsc under each tsconfig and load under ts-node', async () => {
    for (const config of tsconfigs) {
      const dir = newDir('tsconfig-');
      try {
        writeTree(dir, {
          'package.json': { name: 'app', type: config.type, dependencies: { fastify: '^5.0.0' } },
          'tsconfig.json': {
            compilerOptions: {
              module: config.module,
              moduleResolution: config.resolution,
              target: 'es2022',
              strict: true,
              esModuleInterop: true,
              skipLibCheck: true,
              noEmit: true,
            },
            include: ['src'],
          },
          'src/main.ts': '',
        });
        const made = await runCli(['-C', dir, '-f', 'fastify', '--yes', '--no-install']);
        assert.equal(made.code, 0, made.stderr);
        const extension = config.type === 'module' ? '.js' : '';
        const adapter = readFileSync(join(dir, 'src/db/fastify.ts'), 'utf8');
        assert.match(adapter, new RegExp(`^import \\{ db \\} from './index${extension}';$`, 'm'));
        assert.match(made.stdout, new RegExp(`from './db/fastify${extension}';`), config.name);
        linkDependencies(dir);
        await run(dir, [binary('typescript', 'bin/tsc'), '-p', '.']).catch((error) => {
          assert.fail(`${config.name}: ${error}`);
        });
        if (config.type === undefined && config.resolution !== 'bundler') {
          const load =
            "const { dbHooks } = require('./src/db/fastify'); console.log(typeof dbHooks)";
          const loaded = await run(dir, ['-r', 'ts-node/register/transpile-only', '-e', load]);
          assert.equal(loaded.stdout.trim(), 'function', config.name);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  test("Fastify with its logger on: db-hooks' lines are JSON in the app's log, the error as err; logger off: the console", async () => {
    const dir = newDir('fastify-log-');
    try {
      writeTree(dir, {
        'package.json': { name: 'app', type: 'module', dependencies: { fastify: '^5.0.0' } },
      });
      const made = await runCli(['-C', dir, '-f', 'fastify', '--yes', '--no-install']);
      assert.equal(made.code, 0, made.stderr);
      writeTree(dir, {
        'server.js': `import Fastify from 'fastify'
import { dbHooks } from './db/fastify.js'
import { db } from './db/index.js'

const app = Fastify({ logger: process.env.LOG === '1' })
await app.register(dbHooks)
app.get('/', () => db.get('SELECT 1 AS one'))
const reply = await app.inject({ url: '/' })
await app.close()
await db.closePool()
process.stderr.write(\`status \${reply.statusCode}\\n\`)
`,
      });
      linkDependencies(dir);
      const missing = { SQLITE_PATH: join(dir, 'missing', 'app.db') };
      const logged = await run(dir, ['server.js'], { ...missing, LOG: '1' });
      assert.match(logged.stderr, /^status 503$/m);
      const lines = logged.stdout.trim().split('\n');
      // Every line is the app's JSON, db-hooks' among them, its error as err.
      const entries = lines.map(
        (line) => JSON.parse(line) as { msg?: string; err?: { message?: string } },
      );
      const ours = entries.find((entry) =>
        entry.msg?.startsWith('db-hooks: could not open a SQLite connection'),
      );
      assert.ok(ours, logged.stdout);
      assert.match(ours.err?.message ?? '', /directory does not exist|unable to open/);
      assert.doesNotMatch(logged.stderr, /db-hooks:/);

      const quiet = await run(dir, ['server.js'], missing);
      assert.match(quiet.stderr, /^status 503$/m);
      assert.match(quiet.stderr, /db-hooks: could not open a SQLite connection/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
