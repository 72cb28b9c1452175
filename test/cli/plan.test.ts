// The pure parts: answers from flags/manifest/detection/defaults, file statuses, dependencies,
// the manifest written, install commands. No disk, no templates.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type CliOptions, draftAnswers, finishAnswers } from '../../src/cli/answers.ts';
import type { ProjectFacts } from '../../src/cli/detect.ts';
import { UsageError } from '../../src/cli/errors.ts';
import { formatCommand, installCommands } from '../../src/cli/install.ts';
import {
  hashContent,
  type Manifest,
  parseManifest,
  serializeManifest,
} from '../../src/cli/manifest.ts';
import { buildPlan, fileStatus, filesToWrite } from '../../src/cli/plan.ts';
import type { GeneratedFile } from '../../src/cli/render.ts';
import { finalReport } from '../../src/cli/report.ts';

function facts(overrides: Partial<ProjectFacts> = {}): ProjectFacts {
  return {
    root: '/project',
    packageJson: { name: 'demo' },
    name: 'demo',
    language: 'ts',
    moduleFormat: 'esm',
    packageManager: 'npm',
    packageManagerSource: 'default',
    hasSrc: true,
    installed: new Set(),
    frameworks: [],
    drivers: [],
    manifest: undefined,
    ...overrides,
  };
}

const options = (overrides: Partial<CliOptions> = {}): CliOptions => ({
  cwd: '.',
  install: true,
  ...overrides,
});

function manifest(overrides: Partial<Manifest> = {}): Manifest {
  return {
    version: '0.1.0',
    language: 'ts',
    moduleFormat: 'esm',
    database: 'sqlite',
    dir: 'src/db',
    targets: ['express'],
    files: {},
    ...overrides,
  };
}

const usage = (message: RegExp) => (error: unknown) =>
  error instanceof UsageError && message.test(error.message) && !error.message.includes('\n');

describe('answers: flags, then manifest, then detection, then defaults', () => {
  test('defaults: sqlite, src/db when src/ exists, db otherwise, language from tsconfig', () => {
    const draft = draftAnswers(options({ framework: ['express'] }), facts());
    assert.equal(draft.database, 'sqlite');
    assert.equal(draft.databaseSource, 'default');
    assert.equal(draft.dir, 'src/db');
    assert.equal(draft.language, 'ts');
    assert.equal(draftAnswers(options(), facts({ hasSrc: false, language: 'js' })).dir, 'db');
    assert.equal(draftAnswers(options(), facts({ hasSrc: false, language: 'js' })).language, 'js');
  });

  test('flags win over the manifest, the manifest over detection', () => {
    const f = facts({
      manifest: manifest({ database: 'postgres', dir: 'lib/db', language: 'js' }),
      drivers: ['sqlite'],
    });
    const fromManifest = draftAnswers(options(), f);
    assert.equal(fromManifest.database, 'postgres');
    assert.equal(fromManifest.dir, 'lib/db');
    assert.equal(fromManifest.language, 'js');
    const fromFlags = draftAnswers(options({ database: 'sqlite', dir: 'x/db', lang: 'ts' }), f);
    assert.equal(fromFlags.database, 'sqlite');
    assert.equal(fromFlags.databaseSource, 'flag');
    assert.equal(fromFlags.dir, 'x/db');
    assert.equal(fromFlags.language, 'ts');
    const fromDetection = draftAnswers(options(), facts({ drivers: ['postgres'] }));
    assert.equal(fromDetection.database, 'postgres');
    assert.equal(fromDetection.databaseSource, 'detected');
  });

  test('-f is comma-separated, repeatable, deduplicated', () => {
    const draft = draftAnswers(options({ framework: ['koa, express', 'koa'] }), facts());
    assert.deepEqual(draft.flagTargets, ['koa', 'express']);
  });

  test('new targets are added to the manifest ones', () => {
    const f = facts({ manifest: manifest({ targets: ['express'] }) });
    assert.deepEqual(finishAnswers(draftAnswers(options({ framework: ['koa'] }), f)).targets, [
      'express',
      'koa',
    ]);
    assert.deepEqual(finishAnswers(draftAnswers(options(), f)).targets, ['express']);
  });

  test('--orm: comma-separated, none is nothing, added to the manifest ones', () => {
    assert.deepEqual(
      draftAnswers(options({ orm: ['drizzle, kysely', 'none'] }), facts()).flagOrms,
      ['drizzle', 'kysely'],
    );
    assert.equal(draftAnswers(options(), facts()).flagOrms, undefined);
    const f = facts({ manifest: manifest({ orms: ['kysely'] }) });
    const framework = { framework: ['express'] };
    assert.deepEqual(finishAnswers(draftAnswers(options(framework), f)).orms, ['kysely']);
    const added = finishAnswers(draftAnswers(options({ ...framework, orm: ['drizzle'] }), f));
    assert.deepEqual(added.orms, ['kysely', 'drizzle']);
    assert.throws(
      () => draftAnswers(options({ orm: ['typeorm'] }), facts()),
      usage(/unknown ORM 'typeorm' \(valid: kysely, drizzle, prisma\)/),
    );
  });

  test('the manifest: "orms" only when there are some; an unknown one is refused', () => {
    const text = serializeManifest(manifest({ orms: ['drizzle', 'kysely'] }));
    assert.deepEqual(JSON.parse(text).orms, ['kysely', 'drizzle']);
    assert.deepEqual(parseManifest(text).orms, ['kysely', 'drizzle']);
    assert.ok(!serializeManifest(manifest({ orms: [] })).includes('orms'));
    assert.deepEqual(parseManifest(serializeManifest(manifest())).orms, []);
    const bad = serializeManifest(manifest()).replace(
      '"targets"',
      '"orms": ["typeorm"], "targets"',
    );
    assert.throws(() => parseManifest(bad), usage(/unknown ORM 'typeorm' in "orms"/));
  });

  test('one detected framework is the answer; none or several is a missing answer', () => {
    assert.deepEqual(
      finishAnswers(draftAnswers(options(), facts({ frameworks: ['fastify'] }))).targets,
      ['fastify'],
    );
    assert.throws(
      () => finishAnswers(draftAnswers(options(), facts())),
      usage(
        /no framework chosen: pass --framework <ids> \(valid: express, fastify, koa, hono, node-http, fetch, hooks, nestjs\)/,
      ),
    );
    assert.throws(
      () => finishAnswers(draftAnswers(options(), facts({ frameworks: ['express', 'koa'] }))),
      usage(/found express and koa in package\.json/),
    );
  });

  test('bad flags name the value and the valid ones', () => {
    assert.throws(
      () => draftAnswers(options({ framework: ['django'] }), facts()),
      usage(
        /unknown framework 'django' \(valid: express, fastify, koa, hono, node-http, fetch, hooks, nestjs\)/,
      ),
    );
    assert.throws(
      () => draftAnswers(options({ framework: [','] }), facts()),
      usage(/--framework needs at least one id/),
    );
    assert.throws(
      () => draftAnswers(options({ database: 'oracle' }), facts()),
      usage(/unknown database 'oracle' \(valid: sqlite, postgres, mysql\)/),
    );
    assert.throws(
      () => draftAnswers(options({ lang: 'py' }), facts()),
      usage(/unknown --lang 'py' \(valid: ts, js\)/),
    );
    assert.throws(
      () => draftAnswers(options({ dir: '../elsewhere' }), facts()),
      usage(/--dir '\.\.\/elsewhere' is outside the project/),
    );
    assert.throws(
      () => draftAnswers(options({ dir: '/etc' }), facts()),
      usage(/--dir '\/etc' is outside the project/),
    );
    assert.throws(
      () => draftAnswers(options({ dir: 'a/../..' }), facts()),
      usage(/outside the project/),
    );
    assert.throws(() => draftAnswers(options({ dir: '.' }), facts()), usage(/is the project root/));
  });

  test("module format is always the project's, never the manifest's", () => {
    const f = facts({ moduleFormat: 'cjs', manifest: manifest({ moduleFormat: 'esm' }) });
    assert.equal(draftAnswers(options(), f).moduleFormat, 'cjs');
  });
});

describe('file status', () => {
  const h = hashContent;
  test('missing → created; identical → unchanged', () => {
    assert.deepEqual(fileStatus('a', undefined, undefined, false), { status: 'created' });
    assert.deepEqual(fileStatus('a', 'a', h('a'), false), { status: 'unchanged' });
    assert.deepEqual(fileStatus('a', 'a', undefined, false), { status: 'unchanged' });
  });
  test('still as generated → updated; edited → skipped unless --force', () => {
    assert.deepEqual(fileStatus('new', 'old', h('old'), false), { status: 'updated' });
    assert.deepEqual(fileStatus('new', 'edited', h('old'), false), {
      status: 'skipped',
      reason: 'edited',
    });
    assert.deepEqual(fileStatus('new', 'edited', h('old'), true), { status: 'updated' });
    assert.deepEqual(fileStatus('new', 'theirs', undefined, false), {
      status: 'skipped',
      reason: 'exists',
    });
  });
  test('CRLF line endings do not count as an edit', () => {
    assert.equal(h('a\nb\n'), h('a\r\nb\r\n'));
    assert.deepEqual(fileStatus('new', 'old\r\n', h('old\n'), false), { status: 'updated' });
  });
});

describe('buildPlan', () => {
  const rendered: GeneratedFile[] = [
    { path: 'src/db/runtime.ts', content: 'runtime v2\n', kind: 'runtime' },
    { path: 'src/db/index.ts', content: 'index\n', kind: 'index' },
    { path: 'src/db/express.ts', content: 'express v2\n', kind: 'adapter', target: 'express' },
    { path: 'src/db/koa.ts', content: 'koa\n', kind: 'adapter', target: 'koa' },
  ];
  const answers = {
    targets: ['express', 'koa'] as const,
    database: 'sqlite',
    language: 'ts',
    moduleFormat: 'esm',
    dir: 'src/db',
    newApp: false,
  } as const;

  test('re-run: add a target, update what is still as generated, skip what was edited', () => {
    const old = manifest({
      files: {
        'src/db/runtime.ts': hashContent('runtime v1\n'),
        'src/db/index.ts': hashContent('index\n'),
        'src/db/express.ts': hashContent('express v1\n'),
      },
    });
    const current = new Map([
      ['src/db/runtime.ts', 'runtime v1\n'],
      ['src/db/index.ts', 'index\n'],
      ['src/db/express.ts', 'express v1, edited by hand\n'],
      ['db-hooks.json', serializeManifest(old)],
    ]);
    const plan = buildPlan({
      facts: facts({ manifest: old, installed: new Set(['better-sqlite3']) }),
      answers: { ...answers, targets: [...answers.targets] },
      force: false,
      version: '0.2.0',
      rendered,
      current,
    });
    const status = Object.fromEntries(
      plan.files.map((f) => [f.path, f.reason ? `${f.status}:${f.reason}` : f.status]),
    );
    assert.deepEqual(status, {
      'src/db/runtime.ts': 'updated',
      'src/db/index.ts': 'unchanged',
      'src/db/express.ts': 'skipped:edited',
      'src/db/koa.ts': 'created',
      'db-hooks.json': 'updated',
    });
    // The skipped file keeps its old hash, so it still reads as edited next time.
    assert.equal(plan.manifest.files['src/db/express.ts'], hashContent('express v1\n'));
    assert.equal(plan.manifest.files['src/db/koa.ts'], hashContent('koa\n'));
    assert.equal(plan.manifest.version, '0.2.0');
    assert.deepEqual(
      filesToWrite(plan).map((f) => f.path),
      ['src/db/runtime.ts', 'src/db/koa.ts', 'db-hooks.json'],
    );
    // better-sqlite3 is there; its types and Node's are not, and koa/express need no glue package.
    assert.deepEqual(plan.dependencies, []);
    assert.deepEqual(
      plan.devDependencies.map((d) => d.name),
      ['@types/better-sqlite3', '@types/node'],
    );
    assert.equal(plan.databaseChange, undefined);
  });

  test('an identical re-run writes nothing', () => {
    const first = buildPlan({
      facts: facts(),
      answers: { ...answers, targets: [...answers.targets] },
      force: false,
      version: '0.1.0',
      rendered,
      current: new Map(),
    });
    const current = new Map(first.files.map((f) => [f.path, f.content]));
    const second = buildPlan({
      facts: facts({ manifest: parseManifest(first.files.at(-1)!.content) }),
      answers: { ...answers, targets: [...answers.targets] },
      force: false,
      version: '0.1.0',
      rendered,
      current,
    });
    assert.deepEqual(filesToWrite(second), []);
    assert.ok(second.files.every((f) => f.status === 'unchanged'));
  });

  test('JavaScript projects get no type packages; a database change is reported', () => {
    const plan = buildPlan({
      facts: facts({ manifest: manifest({ database: 'sqlite' }) }),
      answers: { ...answers, targets: ['fastify'], database: 'postgres', language: 'js' },
      force: false,
      version: '0.1.0',
      rendered: [],
      current: new Map(),
    });
    assert.deepEqual(
      plan.dependencies.map((d) => d.name),
      ['pg', 'pg-cursor', 'fastify-plugin'],
    );
    assert.deepEqual(plan.devDependencies, []);
    assert.deepEqual(plan.databaseChange, {
      from: 'sqlite',
      to: 'postgres',
      unused: ['runtime-sqlite-core', 'runtime-sqlite'],
    });
  });

  test('a new app gets package.json with everything, tsconfig.json for TypeScript', () => {
    const plan = buildPlan({
      facts: facts({ packageJson: undefined, name: 'my-app' }),
      answers: { ...answers, targets: ['express'], newApp: true },
      force: false,
      version: '0.1.0',
      rendered: [{ path: 'src/app.ts', content: 'app\n', kind: 'app', target: 'express' }],
      current: new Map(),
    });
    const pkg = JSON.parse(plan.files.find((f) => f.path === 'package.json')!.content);
    assert.equal(pkg.name, 'my-app');
    assert.equal(pkg.type, 'module');
    assert.equal(pkg.scripts.start, 'tsx src/app.ts');
    assert.deepEqual(Object.keys(pkg.dependencies), ['better-sqlite3', 'express', 'tsx']);
    assert.deepEqual(Object.keys(pkg.devDependencies), [
      '@types/better-sqlite3',
      '@types/express',
      '@types/node',
      'typescript',
    ]);
    assert.ok(plan.files.some((f) => f.path === 'tsconfig.json'));
    // The app and package.json are the user's from the start: not tracked in the manifest.
    assert.deepEqual(Object.keys(plan.manifest.files), []);
  });
});

describe('final report', () => {
  test('a confirmed database switch with an edited index says the index still uses the old one', () => {
    const old = manifest({
      database: 'sqlite',
      files: { 'src/db/index.ts': hashContent('sqlite index\n') },
    });
    const plan = buildPlan({
      facts: facts({ manifest: old, installed: new Set(['pg', '@types/pg']) }),
      answers: {
        targets: ['express'],
        database: 'postgres',
        language: 'ts',
        moduleFormat: 'esm',
        dir: 'src/db',
        newApp: false,
      },
      force: false,
      version: '0.1.0',
      rendered: [{ path: 'src/db/index.ts', content: 'postgres index\n', kind: 'index' }],
      current: new Map([['src/db/index.ts', 'my own sqlite index\n']]),
    });
    const text = finalReport({
      plan,
      packageManager: 'npm',
      pendingInstall: [],
      invokedFrom: '/project',
    });
    assert.match(text, /^Skipped \(edited; --force overwrites\)\n {2}src\/db\/index\.ts$/m);
    assert.match(
      text,
      /src\/db\/index\.ts was edited, so it still sets up sqlite: switch it to postgres by hand,\s+or\s+re-run\s+with\s+--force/,
    );
    assert.match(
      text.replace(/\n +/g, ' '),
      /The sqlite driver files src\/db\/runtime-sqlite-core\.\* and src\/db\/runtime-sqlite\.\* are no longer used/,
    );
  });
});

describe('install commands', () => {
  const deps = [{ name: 'pg', version: '^8.16.0' }];
  const dev = [{ name: '@types/pg', version: '^8.15.0', typesOnly: true }];
  test('one add per kind, with each package manager', () => {
    assert.deepEqual(installCommands('npm', deps, dev, false).map(formatCommand), [
      'npm install pg@^8.16.0',
      'npm install -D @types/pg@^8.15.0',
    ]);
    assert.deepEqual(installCommands('pnpm', deps, dev, false).map(formatCommand), [
      'pnpm add pg@^8.16.0',
      'pnpm add -D @types/pg@^8.15.0',
    ]);
    assert.deepEqual(installCommands('yarn', deps, [], false).map(formatCommand), [
      'yarn add pg@^8.16.0',
    ]);
    assert.deepEqual(installCommands('bun', [], dev, false).map(formatCommand), [
      'bun add --dev @types/pg@^8.15.0',
    ]);
    assert.deepEqual(installCommands('npm', [], [], false), []);
  });
  test('a new app runs a plain install', () => {
    assert.deepEqual(installCommands('pnpm', deps, dev, true).map(formatCommand), ['pnpm install']);
  });
});
