// The package as users get it: `npm pack`, installed from the tarball into a fresh directory,
// its bin run there. In an empty directory it makes an app, installs its dependencies for real
// (better-sqlite3 builds from source: slow, done once) and `npm start` serves GET /users/1; with
// --driver node:sqlite the same with no compiler on PATH, and nothing native installed.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanEnv, makeProject, readJson, repoRoot, tempDir } from './helpers.ts';

const version = readJson(join(repoRoot, 'package.json')).version;

function run(
  command: string,
  args: string[],
  cwd: string,
  timeoutMs = 120_000,
  env: NodeJS.ProcessEnv = cleanEnv,
): string {
  return execFileSync(command, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('the packed package', () => {
  let consumer: string;
  let bin: string;
  let files: string[];

  before(() => {
    const packDir = tempDir('cdh-pack-');
    // dist/ is fresh (npm test builds first); skip prepack's second build.
    const out = run(
      'npm',
      ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir],
      repoRoot,
    );
    const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
    files = info!.files.map((file) => file.path);
    consumer = tempDir('cdh-consumer-');
    writeFileSync(join(consumer, 'package.json'), '{ "name": "consumer", "private": true }\n');
    run('npm', ['install', '--no-audit', '--no-fund', join(packDir, info!.filename)], consumer);
    bin = join(consumer, 'node_modules', '.bin', 'create-db-hooks');
  });

  test('ships the bin, the bundle, the templates and the runtime, nothing else', () => {
    assert.ok(files.includes('bin/create-db-hooks.cjs'));
    assert.ok(files.includes('dist/cli.cjs'));
    assert.ok(files.includes('src/runtime/runtime.ts'));
    assert.ok(files.includes('package.json'));
    assert.deepEqual(
      files.filter(
        (path) =>
          !/^(bin|dist|templates|src\/runtime)\/|^(package\.json|README\.md|LICENSE)$/.test(path),
      ),
      [],
    );
  });

  test('installs no other package (every dependency is bundled, no native module)', () => {
    const installed = readdirSync(join(consumer, 'node_modules')).filter(
      (name) => !name.startsWith('.'),
    );
    assert.deepEqual(installed, ['create-db-hooks']);
    assert.deepEqual(
      readJson(join(consumer, 'node_modules/create-db-hooks/package.json')).dependencies ?? {},
      {},
    );
  });

  test('its bin answers --version, --help and --list', () => {
    assert.equal(run(bin, ['--version'], consumer).trim(), version);
    assert.match(run(bin, ['--help'], consumer), /npx create-db-hooks express /);
    assert.match(run(bin, ['--list'], consumer), /^ {2}node-http /m);
  });

  test('generates into a TypeScript project', () => {
    const project = makeProject(
      { 'tsconfig.json': '{}', 'src/main.ts': '' },
      { name: 'p', type: 'module', dependencies: { express: '^5.1.0' } },
    );
    const out = run(bin, ['-C', project, '--yes', '--no-install'], consumer);
    assert.match(out, /^Created\n/m);
    assert.ok(existsSync(join(project, 'src/db/express.ts')));
  });

  /**
   * Makes an app in an empty directory, installs it for real, `npm start`, GET /users/1. Returns
   * the app's directory.
   */
  async function appServes(
    target: string,
    extra: string[],
    baseEnv: NodeJS.ProcessEnv = cleanEnv,
  ): Promise<string> {
    const app = join(tempDir('cdh-app-'), 'my-app');
    mkdirSync(app);
    // Installs the app's dependencies for real. better-sqlite3 builds from source where its
    // prebuilt binary cannot be downloaded; -O0 makes that compile several times faster (this
    // test checks that the app works, not how fast its driver is).
    const env = { ...baseEnv, CFLAGS: '-O0', CXXFLAGS: '-O0' };
    const args = ['-C', app, '--framework', target, '--database', 'sqlite', '--yes', ...extra];
    const out = run(bin, args, consumer, 280_000, env);
    assert.match(out, /^Created\n/m);
    const builtIn = extra.includes('node:sqlite');
    assert.equal(existsSync(join(app, 'node_modules/better-sqlite3')), !builtIn);
    const port = await freePort();
    const server = spawn('npm', ['start'], {
      cwd: app,
      env: { ...baseEnv, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    server.stdout.on('data', (chunk) => {
      output += chunk;
    });
    server.stderr.on('data', (chunk) => {
      output += chunk;
    });
    try {
      const deadline = Date.now() + 30_000;
      let response: Response | undefined;
      while (Date.now() < deadline) {
        try {
          response = await fetch(`http://127.0.0.1:${port}/users/1`);
          break;
        } catch {
          await sleep(200);
        }
      }
      assert.ok(response, `the app did not answer on port ${port}:\n${output}`);
      assert.equal(response.status, 200, output);
      assert.match(response.headers.get('content-type') ?? '', /application\/json/);
      const body = (await response.json()) as { id?: unknown };
      assert.equal(body.id, 1, JSON.stringify(body));
    } finally {
      if (server.pid) process.kill(-server.pid, 'SIGTERM');
    }
    return app;
  }

  /** Every file under dir whose name ends with `ending`. */
  function filesEnding(dir: string, ending: string): string[] {
    return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((path) =>
      path.endsWith(ending),
    );
  }

  test('an empty directory becomes a runnable app (JavaScript, node:http): npm start serves GET /users/1', {
    timeout: 300_000,
  }, async () => {
    await appServes('node-http', []);
  });

  test('the same in TypeScript with Express: tsconfig.json, tsx runs it', {
    timeout: 300_000,
  }, async () => {
    await appServes('express', ['--lang', 'ts']);
  });

  test('--driver node:sqlite: installs with no compiler on PATH, nothing native, and npm start serves GET /users/1', {
    timeout: 300_000,
  }, async () => {
    // PATH holds node, npm and sh and nothing else: no cc, c++, make or python to build with.
    const tools = tempDir('cdh-no-compiler-');
    const npm = realpathSync(
      execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim(),
    );
    symlinkSync(process.execPath, join(tools, 'node'));
    symlinkSync(npm, join(tools, 'npm'));
    symlinkSync(realpathSync('/bin/sh'), join(tools, 'sh'));
    const env = { ...cleanEnv, PATH: tools };
    for (const compiler of ['cc', 'gcc', 'c++', 'g++', 'make', 'python3']) {
      const found = spawnSync('sh', ['-c', `command -v ${compiler}`], { env });
      assert.notEqual(found.status, 0, `${compiler} is on the test's PATH`);
    }
    const app = await appServes('express', ['--driver', 'node:sqlite', '--lang', 'ts'], env);
    const pkg = readJson(join(app, 'package.json'));
    assert.equal(pkg.dependencies['better-sqlite3'], undefined);
    assert.equal(pkg.allowScripts, undefined);
    assert.deepEqual(filesEnding(join(app, 'node_modules'), '.node'), [], 'a native module');
    assert.deepEqual(filesEnding(join(app, 'node_modules'), 'binding.gyp'), [], 'a native build');
    assert.equal(readJson(join(app, 'db-hooks.json')).driver, 'node:sqlite');
  });
});
