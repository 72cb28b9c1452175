// Project detection on fixture projects: language, module format, package manager, src/,
// frameworks and drivers, the manifest, and the errors for broken input.
import assert from 'node:assert/strict';
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { detectProject } from '../../src/cli/detect.ts';
import { UsageError } from '../../src/cli/errors.ts';
import { makeProject, tempDir, writeTree } from './helpers.ts';

const noAgent = { npm_config_user_agent: '' };

/** A valid manifest with `overrides` applied: each broken case changes one field. */
function manifest(overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    version: '1',
    language: 'ts',
    moduleFormat: 'esm',
    database: 'sqlite',
    dir: 'db',
    targets: [],
    ...overrides,
  };
}

describe('detectProject', () => {
  test('a bare JavaScript CommonJS project with no lockfile', () => {
    const root = makeProject();
    const facts = detectProject(root, noAgent);
    assert.equal(facts.language, 'js');
    assert.equal(facts.moduleFormat, 'cjs');
    assert.equal(facts.packageManager, 'npm');
    assert.equal(facts.packageManagerSource, 'default');
    assert.equal(facts.hasSrc, false);
    assert.deepEqual(facts.frameworks, []);
    assert.equal(facts.manifest, undefined);
    assert.ok(facts.packageJson);
  });

  test('TypeScript from tsconfig.json, ESM from "type": "module", src/ present', () => {
    const root = makeProject(
      { 'tsconfig.json': '{}', 'src/index.ts': '' },
      { name: 'x', type: 'module' },
    );
    const facts = detectProject(root, noAgent);
    assert.equal(facts.language, 'ts');
    assert.equal(facts.moduleFormat, 'esm');
    assert.equal(facts.hasSrc, true);
  });

  test('"type": "commonjs" is CommonJS', () => {
    const facts = detectProject(makeProject({}, { type: 'commonjs' }), noAgent);
    assert.equal(facts.moduleFormat, 'cjs');
  });

  for (const [lockfile, pm] of [
    ['package-lock.json', 'npm'],
    ['pnpm-lock.yaml', 'pnpm'],
    ['yarn.lock', 'yarn'],
    ['bun.lock', 'bun'],
    ['bun.lockb', 'bun'],
  ] as const) {
    test(`${lockfile} → ${pm}`, () => {
      const facts = detectProject(makeProject({ [lockfile]: '' }), noAgent);
      assert.equal(facts.packageManager, pm);
      assert.equal(facts.packageManagerSource, 'lockfile');
    });
  }

  test('a lockfile at a workspace root above the project counts', () => {
    const root = makeProject({ 'pnpm-lock.yaml': '' });
    const app = join(root, 'packages', 'app');
    writeTree(app, { 'package.json': { name: 'app' } });
    assert.equal(detectProject(app, noAgent).packageManager, 'pnpm');
  });

  test('package.json "packageManager" when there is no lockfile, then the user agent', () => {
    const withField = makeProject({}, { packageManager: 'yarn@4.5.0' });
    assert.equal(detectProject(withField, noAgent).packageManager, 'yarn');
    const plain = makeProject();
    const facts = detectProject(plain, { npm_config_user_agent: 'pnpm/9.1.0 npm/? node/v20.0.0' });
    assert.equal(facts.packageManager, 'pnpm');
    assert.equal(facts.packageManagerSource, 'user agent');
  });

  test('frameworks and drivers from dependencies and devDependencies, in table order', () => {
    const root = makeProject(
      {},
      {
        dependencies: { koa: '^2', express: '^4', pg: '^8' },
        devDependencies: { hono: '^4', '@types/better-sqlite3': '^7' },
      },
    );
    const facts = detectProject(root, noAgent);
    assert.deepEqual(facts.frameworks, ['express', 'koa', 'hono']);
    // A types package alone does not mean the driver is there.
    assert.deepEqual(facts.drivers, ['postgres']);
    assert.ok(facts.installed.has('pg'));
  });

  test('a NestJS app is nestjs, also when it lists the platform it runs on', () => {
    // What `nest new` writes, plus Fastify for @nestjs/platform-fastify.
    const nest = {
      dependencies: {
        '@nestjs/common': '^12',
        '@nestjs/core': '^12',
        '@nestjs/platform-express': '^12',
        'reflect-metadata': '^0.2',
        rxjs: '^7',
      },
      devDependencies: { '@types/express': '^5' },
    };
    assert.deepEqual(detectProject(makeProject({}, nest), noAgent).frameworks, ['nestjs']);
    const onFastify = { dependencies: { ...nest.dependencies, fastify: '^5', express: '^5' } };
    assert.deepEqual(detectProject(makeProject({}, onFastify), noAgent).frameworks, ['nestjs']);
  });

  test('no package.json: a new app, ESM, named after the directory', () => {
    const parent = tempDir();
    const facts = detectProject(join(parent, 'My App!'), noAgent);
    assert.equal(facts.packageJson, undefined);
    assert.equal(facts.moduleFormat, 'esm');
    assert.equal(facts.name, 'my-app');
  });

  test('the manifest is read and checked', () => {
    const root = makeProject({
      'db-hooks.json': {
        version: '0.1.0',
        language: 'js',
        moduleFormat: 'cjs',
        database: 'postgres',
        dir: 'lib/db/',
        targets: ['koa', 'express'],
        files: {},
      },
    });
    const manifest = detectProject(root, noAgent).manifest;
    assert.equal(manifest?.database, 'postgres');
    assert.equal(manifest?.dir, 'lib/db');
    assert.deepEqual(manifest?.targets, ['koa', 'express']);
  });

  test('symlinked project directory resolves to its real path', () => {
    const root = makeProject();
    const link = join(tempDir(), 'link');
    symlinkSync(root, link);
    assert.equal(detectProject(link, noAgent).root, detectProject(root, noAgent).root);
  });

  const broken: Array<[string, () => string, RegExp]> = [
    [
      'malformed package.json',
      () => makeProject({ 'package.json': '{ "name": ' }),
      /package\.json is not valid JSON/,
    ],
    [
      'package.json not an object',
      () => makeProject({ 'package.json': '[1]' }),
      /package\.json is not a JSON object/,
    ],
    [
      'malformed manifest',
      () => makeProject({ 'db-hooks.json': '{oops' }),
      /db-hooks\.json: not valid JSON/,
    ],
    [
      'manifest with an unknown database',
      () => makeProject({ 'db-hooks.json': manifest({ database: 'oracle' }) }),
      /"database" is 'oracle', expected 'sqlite', 'postgres' or 'mysql'/,
    ],
    [
      'manifest with an unknown target',
      () => makeProject({ 'db-hooks.json': manifest({ targets: ['django'] }) }),
      /unknown target 'django'.*express, fastify/,
    ],
    [
      'manifest dir outside the project',
      () => makeProject({ 'db-hooks.json': manifest({ dir: '../x' }) }),
      /"dir" '\.\.\/x' is outside the project/,
    ],
    [
      'manifest file path outside the project',
      () =>
        makeProject({
          'db-hooks.json': manifest({ files: { '/etc/passwd': `sha256-${'0'.repeat(64)}` } }),
        }),
      /file '\/etc\/passwd' is outside the project/,
    ],
    [
      '--cwd is a file',
      () => {
        const root = makeProject();
        return join(root, 'package.json');
      },
      /--cwd '.*package\.json' is not a directory/,
    ],
  ];
  for (const [name, make, message] of broken) {
    test(`${name} → UsageError`, () => {
      const cwd = make();
      assert.throws(
        () => detectProject(cwd, noAgent),
        (error: unknown) =>
          error instanceof UsageError &&
          message.test(error.message) &&
          !error.message.includes('\n'),
      );
    });
  }

  test('a project inside a directory with a file named src is not "src exists"', () => {
    const root = makeProject({ src: 'not a folder' });
    assert.equal(detectProject(root, noAgent).hasSrc, false);
  });
});
