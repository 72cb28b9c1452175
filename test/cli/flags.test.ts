// The built bin end to end, one child process per run, on real temp projects: every flag, every
// bad input (exit 2, one line, nothing written), re-runs, --dry-run, new apps, installs.
import assert from 'node:assert/strict';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { databaseIds, targets } from '../../src/cli/targets.ts';
import {
  contents,
  makeProject,
  readJson,
  repoRoot,
  runCli,
  snapshot,
  tempDir,
  writeTree,
} from './helpers.ts';

const version = readJson(join(repoRoot, 'package.json')).version;

/** Asserts a usage error: exit 2, exactly one line on stderr matching, nothing on disk changed. */
async function assertRejected(args: string[], root: string, message: RegExp) {
  const before = contents(root);
  const result = await runCli(args);
  assert.equal(result.code, 2, `exit code for ${args.join(' ')}\n${result.stderr}${result.stdout}`);
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${result.stderr}`);
  assert.match(lines[0]!, /^create-db-hooks: /);
  assert.match(lines[0]!, message);
  assert.deepEqual(contents(root), before, 'nothing written');
}

describe('information flags', () => {
  test('-V, -v and --version print the package version', async () => {
    for (const flag of ['-V', '-v', '--version']) {
      const result = await runCli([flag]);
      assert.equal(result.code, 0);
      assert.equal(result.stdout.trim(), version);
    }
  });

  test('-h shows every flag and an example per target with its usage', async () => {
    const result = await runCli(['-h']);
    assert.equal(result.code, 0);
    for (const flag of [
      '--cwd',
      '--framework',
      '--database',
      '--orm',
      '--lang',
      '--dir',
      '--yes',
      '--dry-run',
      '--force',
      '--no-install',
      '--list',
      '--version',
      '--help',
    ]) {
      assert.ok(result.stdout.includes(flag), flag);
    }
    for (const target of targets) {
      assert.ok(result.stdout.includes(`npx create-db-hooks ${target.id}`), target.id);
      assert.ok(result.stdout.includes(target.usage), target.usage);
    }
  });

  test('--list prints targets and databases and writes nothing', async () => {
    const root = makeProject();
    const before = contents(root);
    const result = await runCli(['--list', '-C', root]);
    assert.equal(result.code, 0);
    for (const target of targets) assert.match(result.stdout, new RegExp(`^  ${target.id} `, 'm'));
    for (const id of databaseIds) assert.match(result.stdout, new RegExp(`^  ${id} `, 'm'));
    assert.match(
      result.stdout,
      /^SQLite drivers \(--driver\):\n {2}better-sqlite3 .*\(default\)\n {2}node:sqlite {5}built into Node\.js: nothing to install/m,
    );
    assert.deepEqual(contents(root), before);
  });
});

describe('bad input: one line, exit 2, nothing written', () => {
  test('unknown option and extra arguments', async () => {
    const root = makeProject();
    await assertRejected(
      ['-C', root, '--frameworks', 'express'],
      root,
      /unknown option '--frameworks'/,
    );
    await assertRejected(
      ['-C', root, 'express', 'django', '-y'],
      root,
      /unknown framework 'django' \(valid: express, fastify, /,
    );
  });

  test('unknown target', async () => {
    const root = makeProject();
    await assertRejected(
      ['-C', root, '-f', 'express,django', '-y'],
      root,
      /unknown framework 'django' \(valid: express, fastify, koa, hono, node-http, fetch, hooks, nestjs\)/,
    );
  });

  test('unknown database', async () => {
    const root = makeProject();
    await assertRejected(
      ['-C', root, '-f', 'express', '-d', 'oracle', '-y'],
      root,
      /unknown database 'oracle' \(valid: sqlite, postgres, mysql\)/,
    );
  });

  test('unknown ORM', async () => {
    const root = makeProject();
    await assertRejected(
      ['-C', root, '-f', 'express', '--orm', 'kysely,nope', '-y'],
      root,
      /unknown ORM 'nope' \(valid: kysely, drizzle, prisma\)/,
    );
  });

  test('bad --lang', async () => {
    const root = makeProject();
    await assertRejected(
      ['-C', root, '-f', 'express', '--lang', 'coffee', '-y'],
      root,
      /unknown --lang 'coffee' \(valid: ts, js\)/,
    );
  });

  test('--dir outside the project', async () => {
    const root = makeProject();
    await assertRejected(
      ['-C', root, '-f', 'express', '--dir', '../outside', '-y'],
      root,
      /--dir '\.\.\/outside' is outside the project/,
    );
    await assertRejected(
      ['-C', root, '-f', 'express', '--dir', '/tmp/x', '-y'],
      root,
      /--dir '\/tmp\/x' is outside the project/,
    );
  });

  test('--dir through a symlink that leads outside the project', async () => {
    const root = makeProject();
    const outside = tempDir('cdh-outside-');
    symlinkSync(outside, join(root, 'linked'));
    await assertRejected(
      ['-C', root, '-f', 'express', '--dir', 'linked/db', '-y'],
      root,
      /--dir 'linked\/db' is outside the project: 'linked' is a symlink to /,
    );
    assert.deepEqual(contents(outside), {});
  });

  test('a manifest dir through a symlink that leads outside the project', async () => {
    const outside = tempDir('cdh-outside-');
    const root = makeProject({
      'db-hooks.json': {
        version: '0.1.0',
        language: 'js',
        moduleFormat: 'cjs',
        database: 'sqlite',
        dir: 'vendor/db',
        targets: ['express'],
        files: {},
      },
    });
    symlinkSync(outside, join(root, 'vendor'));
    await assertRejected(
      ['-C', root, '-y', '--no-install'],
      root,
      /db-hooks\.json "dir" 'vendor\/db' is outside the project: 'vendor' is a symlink to /,
    );
    assert.deepEqual(contents(outside), {});
  });

  test('a generated file path through a symlinked file that leads outside', async () => {
    const root = makeProject({ 'db/.keep': '' });
    const outside = tempDir('cdh-outside-');
    writeFileSync(join(outside, 'secret.ts'), 'keep me\n');
    symlinkSync(join(outside, 'secret.ts'), join(root, 'db', 'express.js'));
    await assertRejected(
      ['-C', root, '-f', 'express', '-y', '--force', '--no-install'],
      root,
      /'db\/express\.js' is outside the project/,
    );
    assert.equal(readFileSync(join(outside, 'secret.ts'), 'utf8'), 'keep me\n');
  });

  test('malformed package.json', async () => {
    const root = makeProject({ 'package.json': '{ "name": "x", ' });
    await assertRejected(
      ['-C', root, '-f', 'express', '-y'],
      root,
      /package\.json is not valid JSON/,
    );
  });

  test('malformed manifest', async () => {
    const root = makeProject({ 'db-hooks.json': '{ "version": ' });
    await assertRejected(
      ['-C', root, '-f', 'express', '-y'],
      root,
      /db-hooks\.json: not valid JSON .*fix it or delete the file/,
    );
  });

  test('manifest with bad values', async () => {
    const root = makeProject({
      'db-hooks.json': {
        version: '0.1.0',
        language: 'ts',
        moduleFormat: 'esm',
        database: 'oracle',
        dir: 'db',
        targets: [],
      },
    });
    await assertRejected(
      ['-C', root, '-y'],
      root,
      /"database" is 'oracle', expected 'sqlite', 'postgres' or 'mysql'/,
    );
  });

  test('unwritable: the generated directory path is taken by a regular file', async () => {
    const root = makeProject({ 'src/db': 'a file, not a folder\n' });
    await assertRejected(
      ['-C', root, '-f', 'express', '-y'],
      root,
      /cannot write the folder 'src\/db': 'src\/db' is a file, not a directory/,
    );
  });

  test('unwritable: --cwd is a file', async () => {
    const root = makeProject();
    await assertRejected(
      ['-C', join(root, 'package.json'), '-f', 'express', '-y'],
      root,
      /--cwd '.*package\.json' is not a directory/,
    );
  });

  test('unwritable: --cwd to be made under a regular file', async () => {
    const root = makeProject();
    await assertRejected(
      ['-C', join(root, 'package.json', 'app'), '-f', 'express', '-y'],
      root,
      /--cwd '.*package\.json\/app' cannot be created: '.*package\.json' is a file/,
    );
  });

  test('a database change needs --force (or a confirmation in a terminal)', async () => {
    const root = makeProject({ 'src/.keep': '', 'tsconfig.json': '{}' });
    assert.equal((await runCli(['-C', root, '-f', 'express', '-y', '--no-install'])).code, 0);
    await assertRejected(
      ['-C', root, '-d', 'postgres', '-y', '--no-install'],
      root,
      /db-hooks\.json says database 'sqlite', --database says 'postgres': pass --force/,
    );
    const index = readFileSync(join(root, 'src/db/index.ts'), 'utf8');
    const dry = await runCli(['-C', root, '-d', 'postgres', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^ {2}update {2}src\/db\/index\.ts$/m);
    assert.match(dry.stdout, /The database changes from sqlite to postgres: a real run asks first/);
    assert.equal(readFileSync(join(root, 'src/db/index.ts'), 'utf8'), index);
    const forced = await runCli(['-C', root, '-d', 'postgres', '-y', '--no-install', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(readFileSync(join(root, 'src/db/index.ts'), 'utf8'), index);
    assert.ok(existsSync(join(root, 'src/db/runtime-postgres.ts')));
    assert.equal(readJson(join(root, 'db-hooks.json')).database, 'postgres');
    assert.match(forced.stdout.replace(/\n +/g, ' '), /runtime-sqlite\.\* are no longer used/);
  });

  test('a database switch names every file it overwrites, and keeps edits it does not need to change', async () => {
    const root = makeProject(
      { 'src/.keep': '', 'tsconfig.json': '{}' },
      { name: 'x', type: 'module' },
    );
    const setup = await runCli([
      '-C',
      root,
      '-f',
      'express',
      '--orm',
      'kysely',
      '-y',
      '--no-install',
    ]);
    assert.equal(setup.code, 0, setup.stderr);
    const edit = (path: string) => {
      const text = `${readFileSync(join(root, path), 'utf8')}// mine\n`;
      writeFileSync(join(root, path), text);
      return text;
    };
    const pool = edit('src/db/runtime-pool.ts');
    const adapter = edit('src/db/express.ts');
    edit('src/db/index.ts');
    // Without --force: refused, naming the files the switch rewrites (edited or not), no others.
    const refused = await runCli(['-C', root, '-d', 'postgres', '-y', '--no-install']);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(
      refused.stderr,
      /pass --force to switch \(it overwrites src\/db\/index\.ts, src\/db\/kysely\.ts; other edited files are kept\)/,
    );
    assert.doesNotMatch(refused.stderr, /runtime-pool|express\.ts/);
    const forced = await runCli(['-C', root, '-d', 'postgres', '-y', '--no-install', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(readFileSync(join(root, 'src/db/index.ts'), 'utf8'), /PostgresDatabase/);
    assert.doesNotMatch(readFileSync(join(root, 'src/db/index.ts'), 'utf8'), /\/\/ mine/);
    assert.match(readFileSync(join(root, 'src/db/kysely.ts'), 'utf8'), /PostgresDialect|Postgres/);
    // Edits the switch does not need to change are kept, and said to be.
    assert.equal(readFileSync(join(root, 'src/db/runtime-pool.ts'), 'utf8'), pool);
    assert.equal(readFileSync(join(root, 'src/db/express.ts'), 'utf8'), adapter);
    assert.match(
      forced.stdout,
      /Skipped \(edited; --force overwrites\)\n(?: {2}\S+\n)*? {2}src\/db\/runtime-pool\.ts/,
    );
    assert.ok(existsSync(join(root, 'src/db/runtime-postgres.ts')));
    assert.equal(readJson(join(root, 'db-hooks.json')).database, 'postgres');
  });
});

describe('no terminal', () => {
  test('with stdin open and no --yes it never waits: a missing framework fails at once', async () => {
    const root = makeProject();
    // It exits by itself with stdin still open: runCli gives up after 5 s, with no exit code.
    const result = await runCli(['-C', root, '--no-install'], {
      keepStdinOpen: true,
      timeoutMs: 5000,
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /no framework chosen: pass --framework <ids> \(valid: express, /);
    assert.deepEqual(Object.keys(contents(root)), ['package.json']);
  });

  test('with stdin open, the one detected framework is used without asking', async () => {
    const root = makeProject({}, { name: 'x', dependencies: { koa: '^2.15.0' } });
    const result = await runCli(['-C', root, '--no-install'], {
      keepStdinOpen: true,
      timeoutMs: 5000,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.ok(existsSync(join(root, 'db/koa.js')));
  });

  test('several detected frameworks and no --framework: exit 2 naming them', async () => {
    const root = makeProject({}, { name: 'x', dependencies: { koa: '^2', express: '^5' } });
    const result = await runCli(['-C', root, '--no-install']);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /found express and koa in package\.json; no framework chosen: pass --framework/,
    );
  });
});

describe('generating', () => {
  test('TypeScript ESM project: files in src/db, manifest, next steps', async () => {
    const root = makeProject(
      { 'tsconfig.json': '{}', 'src/index.ts': '' },
      { name: 'x', type: 'module', dependencies: { express: '^5' } },
    );
    const result = await runCli(['-C', root, '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    for (const file of ['runtime.ts', 'runtime-sqlite.ts', 'index.ts', 'express.ts']) {
      assert.ok(existsSync(join(root, 'src/db', file)), file);
      assert.match(
        readFileSync(join(root, 'src/db', file), 'utf8'),
        new RegExp(`^// Generated by create-db-hooks ${version.replace(/\./g, '\\.')}\\.`),
      );
    }
    const manifest = readJson(join(root, 'db-hooks.json'));
    assert.deepEqual(
      { ...manifest, files: Object.keys(manifest.files) },
      {
        version,
        language: 'ts',
        moduleFormat: 'esm',
        database: 'sqlite',
        dir: 'src/db',
        targets: ['express'],
        files: [
          'src/db/express.ts',
          'src/db/index.ts',
          'src/db/runtime-database.ts',
          'src/db/runtime-driver.ts',
          'src/db/runtime-errors.ts',
          'src/db/runtime-node.ts',
          'src/db/runtime-options.ts',
          'src/db/runtime-pool.ts',
          'src/db/runtime-request-transaction.ts',
          'src/db/runtime-scope.ts',
          'src/db/runtime-session.ts',
          'src/db/runtime-sqlite-core.ts',
          'src/db/runtime-sqlite.ts',
          'src/db/runtime-stream.ts',
          'src/db/runtime-transaction.ts',
          'src/db/runtime-wait.ts',
          'src/db/runtime.ts',
        ],
      },
    );
    assert.match(manifest.files['src/db/index.ts'], /^cyrb53-[0-9a-f]{14}$/);
    assert.match(result.stdout, /^Created\n {2}src\/db\/runtime\.ts\n/m);
    assert.match(result.stdout, /import \{ dbHooks \} from '\.\/db\/express\.js';/);
    // Where the line goes: requests that never reach a route that queries take no connection.
    assert.match(
      result.stdout,
      /^ +app\.use\(dbHooks\(\)\) {3}\/\/ before the routes that use the database$/m,
    );
    // --no-install prints the exact commands.
    assert.match(result.stdout, /npm install better-sqlite3@\^12\.6\.2\n/);
    assert.match(
      result.stdout,
      /npm install -D @types\/better-sqlite3@\^7\.6\.13 @types\/node@\^22\.19\.0\n/,
    );
  });

  test('JavaScript CommonJS project: .js files in db/ written as CommonJS', async () => {
    const root = makeProject({}, { name: 'x' });
    const result = await runCli([
      '-C',
      root,
      '-f',
      'node-http',
      '-d',
      'postgres',
      '-y',
      '--no-install',
    ]);
    assert.equal(result.code, 0, result.stderr);
    const index = readFileSync(join(root, 'db/index.js'), 'utf8');
    assert.doesNotMatch(index, /^(import|export) /m);
    assert.match(index, /module\.exports = /);
    assert.ok(existsSync(join(root, 'db/runtime-postgres.js')));
    assert.match(result.stdout, /const \{ withDatabase \} = require\('\.\/db\/node-http\.js'\);/);
    assert.match(result.stdout, /npm install pg@\^8\.16\.0 pg-cursor@\^2\.22\.1\n/);
    assert.doesNotMatch(result.stdout, /@types\/pg/);
    assert.equal(readJson(join(root, 'db-hooks.json')).moduleFormat, 'cjs');
  });

  test('--lang js in a TypeScript project, --dir elsewhere, repeated -f', async () => {
    const root = makeProject({ 'tsconfig.json': '{}' }, { name: 'x', type: 'module' });
    const result = await runCli([
      '-C',
      root,
      '-f',
      'hono',
      '-f',
      'fetch',
      '--lang',
      'js',
      '--dir',
      'server/database/',
      '-y',
      '--no-install',
    ]);
    assert.equal(result.code, 0, result.stderr);
    for (const file of ['index.js', 'hono.js', 'fetch.js'])
      assert.ok(existsSync(join(root, 'server/database', file)), file);
    const manifest = readJson(join(root, 'db-hooks.json'));
    assert.equal(manifest.dir, 'server/database');
    assert.equal(manifest.language, 'js');
    assert.deepEqual(manifest.targets, ['hono', 'fetch']);
  });

  test('--cwd given relative to where it runs', async () => {
    const parent = tempDir();
    writeTree(parent, { 'proj/package.json': { name: 'p' } });
    const result = await runCli(['--cwd', 'proj', '-f', 'hooks', '-y', '--no-install'], {
      cwd: parent,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.ok(existsSync(join(parent, 'proj/db/hooks.js')));
  });

  test('--dry-run prints the plan and diffs and writes nothing', async () => {
    const root = makeProject({ 'src/.keep': '' }, { name: 'x', type: 'module' });
    const before = snapshot(root);
    const result = await runCli(['-C', root, '-f', 'express', '--dry-run']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(snapshot(root), before);
    assert.match(result.stdout, /^Dry run: nothing is written and nothing is installed\./);
    assert.match(result.stdout, /^ {2}create {2}src\/db\/express\.js$/m);
    assert.match(result.stdout, /^--- \/dev\/null$/m);
    assert.match(result.stdout, /^\+\+\+ b\/src\/db\/index\.js$/m);
    // express is not in package.json: the adapter needs it, so it is installed too.
    assert.match(
      result.stdout,
      /^Would run:\n {2}npm install better-sqlite3@\^12\.6\.2 express@\^5\.1\.0$/m,
    );
  });

  test('--dry-run on a re-run shows the diff of an updated file', async () => {
    const root = makeProject({}, { name: 'x', type: 'module' });
    assert.equal((await runCli(['-C', root, '-f', 'express', '-y', '--no-install'])).code, 0);
    // Make the recorded state an older generation: same hash as on disk, different content.
    const path = join(root, 'db/index.js');
    const older = readFileSync(path, 'utf8').replace('Generated by', 'Generated long ago by');
    writeFileSync(path, older);
    const manifest = readJson(join(root, 'db-hooks.json'));
    const { hashContent } = await import('../../src/cli/manifest.ts');
    manifest.files['db/index.js'] = hashContent(older);
    writeFileSync(join(root, 'db-hooks.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    const before = snapshot(root);
    const result = await runCli(['-C', root, '--dry-run']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(snapshot(root), before);
    assert.match(result.stdout, /^ {2}update {2}db\/index\.js$/m);
    assert.match(result.stdout, /^-\/\/ Generated long ago by create-db-hooks/m);
    assert.match(result.stdout, /^\+\/\/ Generated by create-db-hooks/m);
  });
});

describe('re-runs', () => {
  test('adds a target, leaves an edited file alone, --force overwrites it', async () => {
    const root = makeProject({ 'tsconfig.json': '{}' }, { name: 'x', type: 'module' });
    assert.equal((await runCli(['-C', root, '-f', 'express', '-y', '--no-install'])).code, 0);
    const express = join(root, 'db/express.ts');
    const generated = readFileSync(express, 'utf8');
    writeFileSync(express, `${generated}// my change\n`);

    const second = await runCli(['-C', root, '-f', 'koa', '-y', '--no-install']);
    assert.equal(second.code, 0, second.stderr);
    assert.ok(existsSync(join(root, 'db/koa.ts')));
    assert.equal(readFileSync(express, 'utf8'), `${generated}// my change\n`);
    assert.deepEqual(readJson(join(root, 'db-hooks.json')).targets, ['express', 'koa']);
    assert.match(second.stdout, /^Created\n {2}db\/koa\.ts\n/m);
    assert.match(second.stdout, /^Skipped \(edited; --force overwrites\)\n {2}db\/express\.ts\n/m);
    assert.match(second.stdout, /^Unchanged\n {2}db\/runtime\.ts\n/m);

    // Still edited on the next run: the manifest kept the generated hash.
    const third = await runCli(['-C', root, '-y', '--no-install']);
    assert.match(third.stdout, /^Skipped \(edited; --force overwrites\)\n {2}db\/express\.ts\n/m);

    const forced = await runCli(['-C', root, '-y', '--no-install', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(readFileSync(express, 'utf8'), generated);
    assert.match(forced.stdout, /^Updated\n {2}db\/express\.ts\n/m);
  });

  test('an identical re-run changes nothing, not even mtimes', async () => {
    const root = makeProject({}, { name: 'x' });
    assert.equal((await runCli(['-C', root, '-f', 'fastify', '-y', '--no-install'])).code, 0);
    const before = snapshot(root);
    const again = await runCli(['-C', root, '-y', '--no-install']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(snapshot(root), before);
    assert.match(again.stdout, /Already up to date: nothing written\./);
  });

  test('a file that is there but was not generated is skipped', async () => {
    const root = makeProject({ 'db/index.js': 'mine\n' }, { name: 'x' });
    const result = await runCli(['-C', root, '-f', 'express', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(readFileSync(join(root, 'db/index.js'), 'utf8'), 'mine\n');
    assert.match(
      result.stdout,
      /^Skipped \(exists, not written by create-db-hooks; --force overwrites\)\n {2}db\/index\.js\n/m,
    );
  });
});

describe('--orm', () => {
  test('writes the binding, records it, and a re-run adds another', async () => {
    const root = makeProject({ 'tsconfig.json': '{}' }, { name: 'x', type: 'module' });
    const first = await runCli(['-C', root, 'express', '--orm', 'kysely', '-y', '--no-install']);
    assert.equal(first.code, 0, first.stderr);
    const kysely = readFileSync(join(root, 'db/kysely.ts'), 'utf8');
    assert.match(kysely, /^export const orm = kyselyFor\(\);$/m);
    assert.match(kysely, /from 'kysely';/);
    const manifest = readJson(join(root, 'db-hooks.json'));
    assert.deepEqual(manifest.orms, ['kysely']);
    assert.ok(manifest.files['db/kysely.ts']);
    assert.match(first.stdout, /^ {2}db\/kysely\.ts$/m);
    assert.match(first.stdout, /Kysely: its queries run on the request's connection/);
    assert.match(first.stdout, /import \{ orm \} from '\.\/db\/kysely\.js';/);

    // The manifest keeps kysely; --orm adds drizzle, for the same database.
    const second = await runCli(['-C', root, '--orm', 'drizzle', '-y', '--no-install']);
    assert.equal(second.code, 0, second.stderr);
    assert.match(readFileSync(join(root, 'db/drizzle.ts'), 'utf8'), /drizzle-orm\/sqlite-proxy/);
    assert.deepEqual(readJson(join(root, 'db-hooks.json')).orms, ['kysely', 'drizzle']);
    assert.match(second.stdout, /^Unchanged\n(?: {2}.*\n)* {2}db\/kysely\.ts\n/m);
  });

  test('postgres, JavaScript CommonJS: the node-postgres binding, as CommonJS', async () => {
    const root = makeProject({}, { name: 'x' });
    const args = [
      '-C',
      root,
      'fastify',
      '-d',
      'postgres',
      '--orm',
      'drizzle',
      '-y',
      '--no-install',
    ];
    const result = await runCli(args);
    assert.equal(result.code, 0, result.stderr);
    const drizzle = readFileSync(join(root, 'db/drizzle.js'), 'utf8');
    assert.match(drizzle, /require\('drizzle-orm\/node-postgres'\)/);
    assert.match(drizzle, /^module\.exports = \{ drizzleFor, orm \};$/m);
  });

  test('none, or no --orm: no binding, and a manifest without "orms"', async () => {
    const root = makeProject({}, { name: 'x' });
    const result = await runCli(['-C', root, 'express', '--orm', 'none', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(!existsSync(join(root, 'db/kysely.js')));
    assert.equal(readJson(join(root, 'db-hooks.json')).orms, undefined);
  });

  test('a new app lists the ORM in its package.json', async () => {
    const root = join(tempDir(), 'app');
    const args = ['-C', root, 'fastify', '-d', 'postgres', '--orm', 'kysely', '-y', '--no-install'];
    const result = await runCli(args);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(readJson(join(root, 'package.json')).dependencies.kysely, '^0.29.9');
    assert.ok(existsSync(join(root, 'src/db/kysely.js')));
  });

  test("prisma: its packages (the CLI as a dev dependency, pg's adapter on postgres) and what to generate", async () => {
    const root = join(tempDir(), 'app');
    const args = ['-C', root, 'express', '-d', 'postgres', '--orm', 'prisma', '--lang', 'ts'];
    const result = await runCli([...args, '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    const pkg = readJson(join(root, 'package.json'));
    assert.equal(pkg.dependencies['@prisma/client'], '^7.10.1');
    assert.equal(pkg.dependencies['@prisma/adapter-pg'], '^7.10.1');
    assert.equal(pkg.dependencies['@prisma/driver-adapter-utils'], '^7.10.1');
    assert.equal(pkg.devDependencies.prisma, '^7.10.1');
    assert.equal(pkg.dependencies.prisma, undefined);
    assert.match(
      readFileSync(join(root, 'src/db/prisma.ts'), 'utf8'),
      /from '@prisma\/adapter-pg';/,
    );
    const steps = result.stdout.replace(/\s+/g, ' ');
    assert.match(steps, /provider = "prisma-client", output = "\.\.\/src\/generated\/prisma"/);
    assert.match(steps, /npx prisma generate/);
    assert.match(steps, /prismaFor\(new PrismaClient\(\{ adapter: prismaAdapter\(\) \}\)\)/);

    // SQLite: no pg adapter.
    const sqlite = join(tempDir(), 'app');
    const other = await runCli(['-C', sqlite, 'express', '--orm', 'prisma', '-y', '--no-install']);
    assert.equal(other.code, 0, other.stderr);
    assert.equal(
      readJson(join(sqlite, 'package.json')).dependencies['@prisma/adapter-pg'],
      undefined,
    );
  });

  test('--dry-run lists the ORM among the dependencies to install', async () => {
    const root = makeProject({}, { name: 'x', dependencies: { express: '^5' } });
    const result = await runCli(['-C', root, '--orm', 'kysely', '-y', '--dry-run']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /kysely@\^0\.29\.9/);
    assert.ok(!existsSync(join(root, 'db-hooks.json')));
  });
});

describe('--driver', () => {
  test('an unknown driver, or one for a database without a choice: one line, exit 2', async () => {
    const root = makeProject();
    await assertRejected(
      ['-C', root, '-f', 'express', '--driver', 'sqlite3', '-y'],
      root,
      /unknown driver 'sqlite3' \(valid: better-sqlite3, node:sqlite\)/,
    );
    await assertRejected(
      ['-C', root, '-f', 'express', '-d', 'postgres', '--driver', 'node:sqlite', '-y'],
      root,
      /--driver 'node:sqlite' is for sqlite \(valid: better-sqlite3, node:sqlite\); postgres has one driver/,
    );
    const manifest = {
      version: '0.1.0',
      language: 'ts',
      moduleFormat: 'esm',
      database: 'sqlite',
      driver: 'sqlite3',
      dir: 'db',
      targets: ['express'],
    };
    const withManifest = makeProject({ 'db-hooks.json': manifest });
    await assertRejected(
      ['-C', withManifest, '-y'],
      withManifest,
      /db-hooks\.json: "driver" is 'sqlite3', expected 'better-sqlite3' or 'node:sqlite'/,
    );
  });

  test('node:sqlite: its driver file, no driver package, the manifest keeps it for a re-run', async () => {
    const root = join(tempDir(), 'app');
    const args = ['-C', root, '-f', 'express', '--lang', 'ts', '-y', '--no-install'];
    const result = await runCli([...args, '-d', 'sqlite', '--driver', 'node:sqlite']);
    assert.equal(result.code, 0, result.stderr);
    const pkg = readJson(join(root, 'package.json'));
    assert.deepEqual(Object.keys(pkg.dependencies), ['express', 'tsx']);
    assert.ok(!('@types/better-sqlite3' in pkg.devDependencies));
    assert.equal(pkg.allowScripts, undefined, 'nothing to build');
    assert.deepEqual(pkg.engines, { node: '>=22.16' });
    assert.ok(existsSync(join(root, 'src/db/runtime-node-sqlite.ts')));
    assert.ok(existsSync(join(root, 'src/db/runtime-sqlite-core.ts')));
    assert.ok(!existsSync(join(root, 'src/db/runtime-sqlite.ts')), 'no better-sqlite3 driver');
    const index = readFileSync(join(root, 'src/db/index.ts'), 'utf8');
    assert.match(index, /import \{ NodeSqliteDatabase \} from '\.\/runtime-node-sqlite\.js';/);
    assert.doesNotMatch(index, /better-sqlite3's own options/);
    const manifest = readJson(join(root, 'db-hooks.json'));
    assert.equal(manifest.database, 'sqlite');
    assert.equal(manifest.driver, 'node:sqlite');

    // A re-run without --driver keeps it: nothing to write.
    const before = snapshot(root);
    const again = await runCli([...args]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(snapshot(root), before);
    assert.ok(!existsSync(join(root, 'src/db/runtime-sqlite.ts')));
  });

  test('a re-run with another --driver switches: index and manifest follow, Next steps name the old file', async () => {
    const root = makeProject({}, { name: 'x', dependencies: { express: '^5' } });
    const first = await runCli(['-C', root, 'express', '-y', '--no-install']);
    assert.equal(first.code, 0, first.stderr);
    const result = await runCli(['-C', root, '--driver', 'node:sqlite', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^Created\n {2}db\/runtime-node-sqlite\.js\n/m);
    assert.match(result.stdout, /^Updated\n {2}db\/index\.js\n {2}db-hooks\.json\n/m);
    assert.match(readFileSync(join(root, 'db/index.js'), 'utf8'), /NodeSqliteDatabase/);
    assert.equal(readJson(join(root, 'db-hooks.json')).driver, 'node:sqlite');
    assert.match(
      result.stdout.replace(/\n +/g, ' '),
      /The better-sqlite3 driver file db\/runtime-sqlite\.\* is no longer used, nor better-sqlite3; remove it when ready\./,
    );
  });

  test('better-sqlite3, the default: its driver file and package, no "driver" in the manifest', async () => {
    const root = join(tempDir(), 'app');
    const args = ['-C', root, '-f', 'express', '-y', '--no-install', '--driver', 'better-sqlite3'];
    const result = await runCli(args);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(existsSync(join(root, 'src/db/runtime-sqlite.js')));
    assert.ok(existsSync(join(root, 'src/db/runtime-sqlite-core.js')));
    assert.ok(!existsSync(join(root, 'src/db/runtime-node-sqlite.js')));
    assert.deepEqual(readJson(join(root, 'package.json')).dependencies, {
      'better-sqlite3': '^12.6.2',
      express: '^5.1.0',
    });
    assert.equal(readJson(join(root, 'db-hooks.json')).driver, undefined);
  });
});

describe('new app in a directory with no package.json', () => {
  test('JavaScript by default: package.json with start script and dependencies, src/app.js', async () => {
    const parent = tempDir();
    const root = join(parent, 'Shop API');
    const result = await runCli(['-C', root, '-f', 'express', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    const pkg = readJson(join(root, 'package.json'));
    assert.equal(pkg.name, 'shop-api');
    assert.equal(pkg.type, 'module');
    assert.equal(pkg.scripts.start, 'node src/app.js');
    assert.deepEqual(pkg.dependencies, { 'better-sqlite3': '^12.6.2', express: '^5.1.0' });
    assert.equal(pkg.devDependencies, undefined);
    // better-sqlite3 builds a native module: npm may run its install script without asking.
    assert.deepEqual(pkg.allowScripts, { 'better-sqlite3': true });
    assert.ok(existsSync(join(root, 'src/app.js')));
    assert.ok(existsSync(join(root, 'src/db/express.js')));
    assert.ok(!existsSync(join(root, 'tsconfig.json')));
    assert.match(
      readFileSync(join(root, 'src/app.js'), 'utf8'),
      /from '\.\/db\/index\.js'|from '\.\/db\//,
    );
    assert.match(
      result.stdout,
      /Next steps\n {2}cd '.*Shop API'\n {2}npm install\n {2}npm start\n/,
    );
  });

  test('--lang ts: tsconfig.json and tsx in the start script', async () => {
    const root = tempDir();
    const result = await runCli([
      '-C',
      root,
      '-f',
      'node-http',
      '--lang',
      'ts',
      '-y',
      '--no-install',
    ]);
    assert.equal(result.code, 0, result.stderr);
    const pkg = readJson(join(root, 'package.json'));
    assert.equal(pkg.scripts.start, 'tsx src/app.ts');
    assert.ok(pkg.dependencies.tsx);
    assert.ok(pkg.devDependencies.typescript);
    assert.equal(readJson(join(root, 'tsconfig.json')).compilerOptions.module, 'NodeNext');
    assert.ok(existsSync(join(root, 'src/app.ts')));
  });

  test('-f nestjs --lang ts: NestJS on Express, and the decorators in tsconfig.json', async () => {
    const root = tempDir();
    const result = await runCli(['-C', root, '-f', 'nestjs', '--lang', 'ts', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    const pkg = readJson(join(root, 'package.json'));
    for (const name of ['@nestjs/common', '@nestjs/core', '@nestjs/platform-express']) {
      assert.ok(pkg.dependencies[name], `${name} missing`);
    }
    assert.ok(pkg.dependencies['reflect-metadata'] && pkg.dependencies.rxjs);
    // tsx runs the app: it needs experimentalDecorators to compile Nest's decorators.
    const { compilerOptions } = readJson(join(root, 'tsconfig.json'));
    assert.equal(compilerOptions.experimentalDecorators, true);
    assert.equal(compilerOptions.emitDecoratorMetadata, true);
    assert.match(readFileSync(join(root, 'src/app.ts'), 'utf8'), /imports: \[DbHooksModule\]/);
    assert.ok(existsSync(join(root, 'src/db/nestjs.ts')));
  });
});

describe('an existing NestJS app', () => {
  test('nestjs is detected, not its platform, and Next steps say where the module goes', async () => {
    const root = makeProject(
      { 'tsconfig.json': '{}', 'src/main.ts': '' },
      { dependencies: { '@nestjs/core': '^12', '@nestjs/platform-fastify': '^12', fastify: '^5' } },
    );
    const result = await runCli(['-C', root, '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(existsSync(join(root, 'src/db/nestjs.ts')));
    assert.ok(!existsSync(join(root, 'src/db/fastify.ts')), 'fastify is only the platform here');
    assert.match(result.stdout, /import \{ DbHooksModule \} from '\.\/db\/nestjs';/);
    assert.match(result.stdout, /imports: \[DbHooksModule\] {3}\/\/ in the root module/);
  });
});

describe('installing', () => {
  /**
   * A fake package manager on PATH that records how it was called and "installs" the drivers:
   * the real better-sqlite3 (this Node.js line's build) and pg, linked in, so the CLI's check
   * that the driver loads in the project loads the real one; or, given `driver` (a module body),
   * a stand-in for both, e.g. one that throws as a driver whose build did not run.
   */
  function fakePackageManager(
    name: string,
    exitCode = 0,
    driver?: string,
  ): { env: NodeJS.ProcessEnv; calls: () => string[] } {
    const bin = tempDir('cdh-bin-');
    const log = join(bin, 'calls.log');
    const real: Record<string, string> = {
      'better-sqlite3':
        process.env.CDH_BETTER_SQLITE3_PACKAGE ??
        realpathSync(join(repoRoot, 'node_modules', 'better-sqlite3')),
      pg: realpathSync(join(repoRoot, 'node_modules', 'pg')),
    };
    if (driver) writeFileSync(join(bin, 'driver.js'), driver);
    const install = Object.entries(real).map(([d, path]) =>
      driver
        ? `mkdir -p node_modules/${d}; cp '${join(bin, 'driver.js')}' node_modules/${d}/index.js`
        : `mkdir -p node_modules; rm -rf node_modules/${d}; ln -s '${path}' node_modules/${d}`,
    );
    writeFileSync(
      join(bin, name),
      [
        '#!/bin/sh',
        `if [ "$1" = --version ]; then echo 10.34.9; exit 0; fi`,
        `echo "$(pwd) ${name} $*" >> '${log}'`,
        ...install,
        `exit ${exitCode}`,
        '',
      ].join('\n'),
    );
    chmodSync(join(bin, name), 0o755);
    return {
      env: { PATH: `${bin}:${process.env.PATH}` },
      calls: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []),
    };
  }

  test('adds only missing dependencies with the detected package manager', async () => {
    const root = makeProject(
      { 'pnpm-lock.yaml': '', 'tsconfig.json': '{}' },
      { name: 'x', dependencies: { fastify: '^5', pg: '^8' } },
    );
    const pm = fakePackageManager('pnpm');
    const result = await runCli(['-C', root, '-d', 'postgres', '-y'], { env: pm.env });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(
      pm.calls().map((line) => line.replace(/^\S+ /, '')),
      [
        'pnpm add pg-cursor@^2.22.1 fastify-plugin@^5.0.1',
        'pnpm add -D @types/pg@^8.15.0 @types/pg-cursor@^2.7.2 @types/node@^22.19.0',
      ],
    );
    // Run in the project: the fake records its working directory first.
    assert.ok(pm.calls()[0]!.startsWith(`${realpathSync(root)} `), pm.calls()[0]);
    assert.doesNotMatch(result.stdout, /Next steps\n {2}pnpm add/);
  });

  test('a failed install exits 1 and prints the command to run', async () => {
    const root = makeProject({ 'yarn.lock': '' }, { name: 'x' });
    const pm = fakePackageManager('yarn', 1);
    const result = await runCli(['-C', root, '-f', 'express', '-y'], { env: pm.env });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /installing dependencies failed/);
    assert.match(result.stdout, /^ {2}yarn add better-sqlite3@\^12\.6\.2 express@\^5\.1\.0$/m);
    assert.ok(existsSync(join(root, 'db/express.js')), 'the files are written before installing');
  });

  test('a target whose framework the project lacks: the framework and its types are installed', async () => {
    const root = makeProject(
      { 'tsconfig.json': '{}', 'src/app.ts': '' },
      {
        name: 'x',
        type: 'module',
        dependencies: { express: '^5', 'better-sqlite3': '^12' },
        devDependencies: {
          '@types/express': '^5',
          '@types/better-sqlite3': '^7',
          '@types/node': '^22',
        },
      },
    );
    const pm = fakePackageManager('npm');
    const result = await runCli(['-C', root, 'koa', 'node-http', '-y'], { env: pm.env });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(
      pm.calls().map((line) => line.replace(/^\S+ /, '')),
      ['npm install koa@^3.0.0', 'npm install -D @types/koa@^2.15.0'],
    );
    // --no-install: the same commands, printed.
    const other = makeProject(
      { 'tsconfig.json': '{}' },
      { name: 'x', dependencies: { express: '^5' } },
    );
    const printed = await runCli(['-C', other, 'fastify', '-y', '--no-install']);
    assert.match(
      printed.stdout,
      /^ {2}npm install better-sqlite3@\^12\.6\.2 fastify-plugin@\^5\.0\.1 fastify@\^5\.4\.0$/m,
    );
  });

  test('pnpm 10 is told to build better-sqlite3; a driver that does not load is reported with the fix', async () => {
    const root = makeProject({ 'pnpm-lock.yaml': '' }, { name: 'x', dependencies: { koa: '^3' } });
    const pm = fakePackageManager(
      'pnpm',
      0,
      "throw new Error('Could not locate the bindings file. Tried: ...');",
    );
    const result = await runCli(['-C', root, '-y'], { env: pm.env });
    assert.deepEqual(
      pm.calls().map((line) => line.replace(/^\S+ /, '')),
      ['pnpm add --allow-build=better-sqlite3 better-sqlite3@^12.6.2'],
    );
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /better-sqlite3 was installed but does not load \(Error: Could not locate the bindings file\. Tried: \.\.\.\); its build script did not run or failed: run `pnpm add --allow-build=better-sqlite3 better-sqlite3@\^12\.6\.2` in /,
    );
    assert.match(
      result.stdout,
      /^Next steps\n {2}pnpm add --allow-build=better-sqlite3 better-sqlite3@\^12\.6\.2$/m,
    );
  });

  test('a package manager that is not installed: says so, and how to get it', async () => {
    const root = makeProject({ 'pnpm-lock.yaml': '' }, { name: 'x', dependencies: { koa: '^3' } });
    // A PATH with node's own folder only: no pnpm there.
    const result = await runCli(['-C', root, '-y'], { env: { PATH: dirname(process.execPath) } });
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^create-db-hooks: pnpm is not installed, and this project uses it: enable it with `corepack enable pnpm`/m,
    );
    assert.match(
      result.stdout,
      /^ {2}pnpm add --allow-build=better-sqlite3 better-sqlite3@\^12\.6\.2$/m,
    );
    assert.ok(existsSync(join(root, 'db/koa.js')));
  });

  test('a new pnpm app allows better-sqlite3 to build: package.json for pnpm 10, else pnpm-workspace.yaml too', async () => {
    const pm = fakePackageManager('pnpm');
    const agent = { npm_config_user_agent: 'pnpm/10.34.9 npm/? node/v20' };
    const ten = join(tempDir(), 'app');
    const result = await runCli(['-C', ten, 'express', '-y', '--no-install'], {
      env: { ...pm.env, ...agent },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(readJson(join(ten, 'package.json')).pnpm, {
      onlyBuiltDependencies: ['better-sqlite3'],
    });
    assert.ok(!existsSync(join(ten, 'pnpm-workspace.yaml')));
    // pnpm not installed yet (corepack will bring the latest): both places.
    const unknown = join(tempDir(), 'app');
    const other = await runCli(['-C', unknown, 'express', '-y', '--no-install'], {
      env: { PATH: dirname(process.execPath), ...agent },
    });
    assert.equal(other.code, 0, other.stderr);
    assert.ok(readJson(join(unknown, 'package.json')).pnpm);
    assert.equal(
      readFileSync(join(unknown, 'pnpm-workspace.yaml'), 'utf8'),
      'allowBuilds:\n  better-sqlite3: true\n',
    );
  });

  test('nothing missing: no install at all', async () => {
    const root = makeProject({}, { name: 'x', dependencies: { 'better-sqlite3': '^12' } });
    const pm = fakePackageManager('npm');
    const result = await runCli(['-C', root, '-f', 'hooks', '-y'], { env: pm.env });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(pm.calls(), []);
  });

  test('a new app runs one plain install in its directory', async () => {
    const root = join(tempDir(), 'fresh');
    mkdirSync(root);
    const pm = fakePackageManager('npm');
    const result = await runCli(['-C', root, '-f', 'express', '-y'], { env: pm.env });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(
      pm.calls().map((line) => line.replace(/^\S+ /, '')),
      ['npm install'],
    );
  });
});

describe('where it runs: the project root', () => {
  test('without --cwd it works on the nearest folder upward with a package.json', async () => {
    const root = makeProject({ 'src/routes/users.js': '' }, { name: 'x', type: 'module' });
    const result = await runCli(['express', '-y', '--no-install'], {
      cwd: join(root, 'src/routes'),
    });
    assert.equal(result.code, 0, result.stderr);
    assert.ok(existsSync(join(root, 'src/db/express.js')));
    assert.ok(existsSync(join(root, 'db-hooks.json')));
    assert.ok(!existsSync(join(root, 'src/routes/package.json')));
    assert.ok(!existsSync(join(root, 'src/routes/src')));
  });

  test('a folder with files and no package.json is not a project: exit 2 under --yes', async () => {
    const home = tempDir('cdh-home-');
    writeTree(home, { '.bashrc': '', 'notes.txt': 'mine\n' });
    await assertRejected(
      ['-C', home, 'express', '-y', '--no-install'],
      home,
      /has files but no package\.json, so it is not a project: run create-db-hooks in your project/,
    );
    // No terminal and no --yes: the same answer, never a wait.
    await assertRejected(['-C', home, 'express', '--no-install'], home, /is not a project/);
  });

  test('a fresh repository (README, LICENSE, .git) still counts as empty: a new app', async () => {
    const root = tempDir();
    writeTree(root, { 'README.md': '# app\n', LICENSE: 'MIT\n', '.git/HEAD': 'ref\n' });
    const result = await runCli(['-C', root, 'express', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(existsSync(join(root, 'package.json')));
  });
});

describe('small things users meet', () => {
  test('positional target names, alone or with -f', async () => {
    const root = makeProject({}, { name: 'x' });
    const result = await runCli([
      '-C',
      root,
      'express',
      'hooks',
      '-f',
      'koa',
      '-d',
      'postgres',
      '-y',
      '--no-install',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(readJson(join(root, 'db-hooks.json')).targets, ['express', 'koa', 'hooks']);
  });

  test('--help into a pipe that is already closed ends quietly (no EPIPE stack)', async () => {
    const { spawn } = await import('node:child_process');
    const { binPath } = await import('./helpers.ts');
    for (let i = 0; i < 3; i++) {
      const child = spawn(process.execPath, [binPath(), '--help'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.destroy(); // the reader is gone before the first byte, as with `| head -0`
      let stderr = '';
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
      });
      const code = await new Promise((resolve) => child.on('exit', resolve));
      assert.equal(stderr, '');
      assert.equal(code, 0);
    }
  });

  test('a manifest from a newer create-db-hooks is refused unless --force', async () => {
    const root = makeProject({}, { name: 'x' });
    assert.equal((await runCli(['-C', root, 'express', '-y', '--no-install'])).code, 0);
    const manifest = readJson(join(root, 'db-hooks.json'));
    writeFileSync(
      join(root, 'db-hooks.json'),
      `${JSON.stringify({ ...manifest, version: '99.0.0' }, null, 2)}\n`,
    );
    await assertRejected(
      ['-C', root, 'koa', '-y', '--no-install'],
      root,
      /db-hooks\.json was written by create-db-hooks 99\.0\.0, newer than this one \(.*\): run npx create-db-hooks@latest, or pass --force/,
    );
    const forced = await runCli(['-C', root, 'koa', '-y', '--no-install', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(readJson(join(root, 'db-hooks.json')).version, version);
  });

  test('CommonJS Fastify: Next steps without top-level await', async () => {
    const cjs = makeProject({}, { name: 'x', dependencies: { fastify: '^5' } });
    const result = await runCli(['-C', cjs, '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^ +app\.register\(dbHooks\) {3}\/\/ before the routes; /m);
    assert.doesNotMatch(result.stdout, /await/);
    const esm = makeProject({}, { name: 'x', type: 'module', dependencies: { fastify: '^5' } });
    const esmResult = await runCli(['-C', esm, '-y', '--no-install']);
    assert.match(esmResult.stdout, /^ +await app\.register\(dbHooks\) /m);
  });

  test("Express 4: Next steps give the entry file a listener that lets a gone client's rejection pass; Express 5 needs none", async () => {
    const four = makeProject({}, { name: 'x', dependencies: { express: '^4.21.2' } });
    const result = await runCli(['-C', four, '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Express 4 ignores the promise of an async handler/);
    assert.match(
      result.stdout,
      /^ {6}const \{ isGoneClient \} = require\('\.\/db\/express\.js'\);\n {6}process\.on\('unhandledRejection', \(reason\) => \{\n {8}if \(!isGoneClient\(reason\)\) throw reason;.*\n {6}\}\);$/m,
    );
    // The listener is the app's: the generated adapter only exports the test.
    const adapter = readFileSync(join(four, 'db/express.js'), 'utf8');
    assert.match(adapter, /isGoneClient/);
    assert.doesNotMatch(adapter, /process\./);
    const five = makeProject({}, { name: 'x', dependencies: { express: '^5.1.0' } });
    const fiveResult = await runCli(['-C', five, '-y', '--no-install']);
    assert.equal(fiveResult.code, 0, fiveResult.stderr);
    assert.doesNotMatch(fiveResult.stdout, /unhandledRejection/);
  });

  test('--dry-run names a skipped file in one pair of brackets', async () => {
    const root = makeProject({ 'db/index.js': 'mine\n' }, { name: 'x' });
    const result = await runCli(['-C', root, 'express', '--dry-run']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /^diff db\/index\.js \(skipped: already exists and was not written by create-db-hooks; --force overwrites it\)$/m,
    );
    for (const line of result.stdout
      .split('\n')
      .filter((l) => /^(diff | {2}skip ).*skip/.test(l))) {
      assert.equal(line.split('(').length, 2, `one pair of brackets: ${line}`);
    }
  });

  test('Next steps fit in 100 columns, and speak of listeners, fetch handlers and hooks', async () => {
    const runs: string[][] = [
      [
        'express',
        'fastify',
        'koa',
        'hono',
        'node-http',
        'fetch',
        'hooks',
        'nestjs',
        '-d',
        'postgres',
      ],
      ['-d', 'sqlite', 'hooks', '--dir', 'server/some/deeply/nested/folder/for/the/database/code'],
    ];
    for (const args of runs) {
      const root = makeProject({ 'tsconfig.json': '{}' }, { name: 'x', type: 'module' });
      const result = await runCli(['-C', root, ...args, '-y', '--no-install']);
      assert.equal(result.code, 0, result.stderr);
      const steps = result.stdout.slice(result.stdout.indexOf('Next steps'));
      for (const line of steps.split('\n')) assert.ok(line.length <= 100, `too long: ${line}`);
    }
    const help = await runCli(['--help']);
    const list = await runCli(['--list']);
    for (const text of [help.stdout, list.stdout]) {
      assert.doesNotMatch(text, /WSGI|ASGI|Flask/);
    }
  });
});

describe('what to keep out of git, and what a new PostgreSQL app needs', () => {
  test('a new SQLite app gets a .gitignore; a fresh repository keeps its own lines', async () => {
    const root = tempDir();
    const result = await runCli(['-C', root, 'express', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      readFileSync(join(root, '.gitignore'), 'utf8'),
      'node_modules\napp.db\napp.db-wal\napp.db-shm\n',
    );
    const repo = tempDir();
    writeTree(repo, { '.gitignore': '.env\n/node_modules/' });
    assert.equal((await runCli(['-C', repo, 'koa', '-y', '--no-install'])).code, 0);
    assert.equal(
      readFileSync(join(repo, '.gitignore'), 'utf8'),
      '.env\n/node_modules/\napp.db\napp.db-wal\napp.db-shm\n',
    );
  });

  test('a new PostgreSQL app: Next steps set DATABASE_URL before npm start', async () => {
    const root = tempDir();
    const result = await runCli(['-C', root, 'express', '-d', 'postgres', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /^ {2}export DATABASE_URL=postgres:\/\/user:pass@localhost:5432\/app .*\n {2}npm start$/m,
    );
    assert.equal(readFileSync(join(root, '.gitignore'), 'utf8'), 'node_modules\n');
  });

  test('an existing SQLite project hears about app.db* unless its .gitignore has them', async () => {
    const bare = makeProject({ '.gitignore': 'node_modules\napp.db\n' }, { name: 'x' });
    const result = await runCli(['-C', bare, 'express', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Add app\.db-wal and app\.db-shm to \.gitignore/);
    assert.equal(readFileSync(join(bare, '.gitignore'), 'utf8'), 'node_modules\napp.db\n');
    const covered = makeProject({ '.gitignore': 'node_modules\n*.db*\n' }, { name: 'x' });
    const quiet = await runCli(['-C', covered, 'express', '-y', '--no-install']);
    assert.doesNotMatch(quiet.stdout, /\.gitignore/);
  });
});

describe('JavaScript made at build time', () => {
  test('a JavaScript run loads neither sucrase nor Prettier: they can be missing', async () => {
    const { cpSync, rmSync, readdirSync } = await import('node:fs');
    const { builtPackage } = await import('./helpers.ts');
    const stripped = join(tempDir('cdh-stripped-'), 'pkg');
    cpSync(builtPackage(), stripped, { recursive: true });
    for (const file of readdirSync(join(stripped, 'dist/vendor'))) {
      if (/^(sucrase|prettier)/.test(file)) rmSync(join(stripped, 'dist/vendor', file));
    }
    const bin = join(stripped, 'bin/create-db-hooks.cjs');
    const { spawnSync } = await import('node:child_process');
    const all = targets.map((t) => t.id).join(',');
    for (const type of ['module', 'commonjs']) {
      for (const database of databaseIds) {
        const root = makeProject({}, { name: 'x', type });
        const result = spawnSync(
          process.execPath,
          [bin, '-C', root, '-f', all, '-d', database, '-y', '--no-install'],
          { encoding: 'utf8' },
        );
        assert.equal(result.status, 0, result.stderr);
      }
      const app = join(tempDir(), 'app');
      const made = spawnSync(
        process.execPath,
        [bin, '-C', app, 'fastify', '--lang', 'js', '-y', '--no-install'],
        { encoding: 'utf8' },
      );
      assert.equal(made.status, 0, made.stderr);
    }
  });

  test('a source the build did not see (an app under a custom --dir) is converted at run time', async () => {
    const root = join(tempDir(), 'app');
    const result = await runCli([
      '-C',
      root,
      'express',
      '--dir',
      'server/database',
      '-y',
      '--no-install',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      readFileSync(join(root, 'src/app.js'), 'utf8'),
      /from '\.\.\/server\/database\/index\.js'/,
    );
  });
});
