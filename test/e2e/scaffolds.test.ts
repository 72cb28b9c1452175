// The apps real scaffolders make, as a new user would wire them: the files fastify-cli's
// `generate --lang=ts` and express-generator's `--no-view` produce (the parts that decide how
// generated code loads: package.json, tsconfig, module format, the test helper), create-db-hooks
// run on them as README says, a DB route added, and then the app's own checks: tsc for its build
// and its tests, and its tests under its own runner (`node --test -r ts-node/register` for
// fastify-cli), on a working database and on one that is down (503, nothing internal shown).
// The scaffolders' own plugins (@fastify/autoload, morgan, cookie-parser) are left out: they
// change nothing of the above, and the routes are registered by hand instead.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { runCli, writeTree } from '../cli/helpers.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { binary, installDependencies, linkDependencies, repoRoot } from './support/deps.ts';

const execFileAsync = promisify(execFile);

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

// fastify-cli generate --lang=ts: CommonJS TypeScript, fastify-tsconfig's settings (module
// commonjs, moduleResolution node), tests run by ts-node/register, an app built per test and
// closed after it by the helper.
const fastifyTsApp = {
  'package.json': {
    name: 'fastify-ts-app',
    version: '1.0.0',
    main: 'app.ts',
    scripts: {
      test: 'npm run build:ts && tsc -p test/tsconfig.json && node --test -r ts-node/register "test/**/*.ts"',
      'build:ts': 'tsc',
    },
    dependencies: { fastify: '^5.0.0', 'fastify-plugin': '^5.0.0' },
    devDependencies: { '@types/node': '^22.1.0', 'ts-node': '^10.4.0', typescript: '~5.9.3' },
  },
  'tsconfig.json': {
    compilerOptions: {
      target: 'es2018',
      module: 'commonjs',
      moduleResolution: 'node',
      declaration: true,
      pretty: true,
      noEmitOnError: true,
      strict: true,
      resolveJsonModule: true,
      removeComments: true,
      newLine: 'lf',
      noUnusedLocals: true,
      noFallthroughCasesInSwitch: true,
      useDefineForClassFields: true,
      forceConsistentCasingInFileNames: true,
      skipLibCheck: true,
      lib: ['esnext'],
      esModuleInterop: true,
      outDir: 'dist',
    },
    include: ['src/**/*.ts'],
  },
  'test/tsconfig.json': {
    extends: '../tsconfig.json',
    compilerOptions: { noEmit: true },
    include: ['**/*.ts'],
  },
  'src/app.ts': `import { FastifyPluginAsync } from 'fastify'
import root from './routes/root'

const app: FastifyPluginAsync = async (fastify, opts): Promise<void> => {
  // Place here your custom code!

  // eslint-disable-next-line no-void
  void fastify.register(root, opts)
}

export default app
export { app }
`,
  'src/routes/root.ts': `import { FastifyPluginAsync } from 'fastify'

const root: FastifyPluginAsync = async (fastify, opts): Promise<void> => {
  fastify.get('/', async function (request, reply) {
    return { root: true }
  })
}

export default root
`,
  'test/helper.ts': `// This file contains code that we reuse between our tests.
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import * as test from 'node:test'
import App from '../src/app'

export type TestContext = {
  after: typeof test.after
}

// Automatically build and tear down our instance
async function build (t: TestContext) {
  const app = Fastify()
  void app.register(fp(App))
  await app.ready()

  // Tear down our app after we are done
  t.after(() => void app.close())

  return app
}

export { build }
`,
  'test/routes/root.test.ts': `import { test } from 'node:test'
import * as assert from 'node:assert'
import { build } from '../helper'

test('default root route', async (t) => {
  const app = await build(t)

  const res = await app.inject({
    url: '/'
  })
  assert.deepStrictEqual(JSON.parse(res.payload), { root: true })
})
`,
};

/** The DB route and its tests, in fastify-cli's style: one app per test, closed after it. */
function fastifyUsers(database: Database): Record<string, string> {
  const p = database === 'sqlite' ? '?' : '$1';
  return {
    'src/routes/users.ts': `import { FastifyPluginAsync } from 'fastify'
import { db } from '../db/index'

const users: FastifyPluginAsync = async (fastify): Promise<void> => {
  fastify.get<{ Params: { id: string } }>('/users/:id', async (request, reply) => {
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

// express-generator --no-view: CommonJS JavaScript on Express 4, app.js exporting the app, no
// error handler of its own (Express's final handler answers errors), no test suite: the test
// added is node:test's.
const expressApp = {
  'package.json': {
    name: 'express-app',
    version: '0.0.0',
    private: true,
    scripts: { start: 'node ./bin/www', test: 'node --test' },
    dependencies: { express: '~4.16.1' },
  },
  'bin/www': `#!/usr/bin/env node
var app = require('../app');
var http = require('http');
var port = process.env.PORT || '3000';
app.set('port', port);
var server = http.createServer(app);
server.listen(port);
`,
  'app.js': `var express = require('express');
var path = require('path');

var indexRouter = require('./routes/index');
var usersRouter = require('./routes/users');

var app = express();

app.use(express.json());
app.use(express.urlencoded({ extended: false }));
app.use(express.static(path.join(__dirname, 'public')));

app.use('/', indexRouter);
app.use('/users', usersRouter);

module.exports = app;
`,
  'routes/index.js': `var express = require('express');
var router = express.Router();

router.get('/', function(req, res, next) {
  res.json({ title: 'Express' });
});

module.exports = router;
`,
  'routes/users.js': `var express = require('express');
var router = express.Router();

/* GET users listing. */
router.get('/', function(req, res, next) {
  res.send('respond with a resource');
});

module.exports = router;
`,
};

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

describe('apps made by real scaffolders, with create-db-hooks added as README says', () => {
  installDependencies();

  for (const database of databases) {
    test(`fastify-cli --lang=ts (CommonJS, ts-node) on ${database}: tsc and the app's tests pass; database down → 503`, async () => {
      const dir = newDir('fastify-cli-');
      const env = await databaseEnv(database, dir);
      try {
        writeTree(dir, fastifyTsApp);
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

        writeTree(dir, fastifyUsers(database));
        const app = join(dir, 'src/app.ts');
        insertAfter(
          app,
          /^import root from '\.\/routes\/root'$/m,
          `${importLine}\nimport users from './routes/users'`,
        );
        insertAfter(
          app,
          /^ {2}\/\/ Place here your custom code!$/m,
          '  await fastify.register(dbHooks)\n  void fastify.register(users)',
        );
        linkDependencies(dir);
        const tsc = binary('typescript', 'bin/tsc');
        // `npm test`: build:ts, the tests' type check, then the tests under ts-node.
        await run(dir, [tsc]);
        await run(dir, [tsc, '-p', 'test/tsconfig.json']);
        const tests = ['--test', '--test-reporter=tap', '-r', 'ts-node/register', 'test/**/*.ts'];
        const passed = await run(dir, tests, env.up);
        assert.match(passed.stdout, /# pass 5\n# fail 0/, passed.stdout);
        const down = await run(dir, tests, { ...env.down, DB_DOWN: '1' });
        assert.match(down.stdout, /# pass 5\n# fail 0/, down.stdout);
      } finally {
        await env.drop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  for (const database of databases) {
    test(`express-generator --no-view (CommonJS JavaScript, Express 4) on ${database}: its tests pass; database down → 503`, async () => {
      const dir = newDir('express-generator-');
      const env = await databaseEnv(database, dir);
      try {
        writeTree(dir, expressApp);
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
        // Express 4: Next steps also say to call ignoreGoneClientRejections() once.
        const rejections = importLineFrom(made.stdout, /ignoreGoneClientRejections \} = require/);
        insertAfter(
          join(dir, 'app.js'),
          /^var app = express\(\);$/m,
          `${importLine}\n${rejections}\nignoreGoneClientRejections();\napp.use(dbHooks());`,
        );
        const users = join(dir, 'routes/users.js');
        insertAfter(
          users,
          /^var router = express\.Router\(\);$/m,
          "var { db } = require('../db/index.js');",
        );
        insertAfter(users, /^}\);$/m, `\n${route}`);
        linkDependencies(dir, { express: 'express4' });
        const passed = await run(dir, ['--test', '--test-reporter=tap'], env.up);
        assert.match(passed.stdout, /# pass 1\n# fail 0/, passed.stdout);
        const down = await run(dir, ['--test', '--test-reporter=tap'], {
          ...env.down,
          DB_DOWN: '1',
        });
        assert.match(down.stdout, /# pass 1\n# fail 0/, down.stdout);
      } finally {
        await env.drop();
        rmSync(dir, { recursive: true, force: true });
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
