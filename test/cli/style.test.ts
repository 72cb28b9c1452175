// The project's own code style: generated files follow its Prettier, Biome or .editorconfig
// settings (with the project's own formatter when installed), a file the user only reformatted
// counts as unchanged, and an edit in one file never makes another one lose its edits.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { sameCode, withoutLayout } from '../../src/cli/manifest.ts';
import { biomeToPrettier, editorconfigToPrettier } from '../../src/cli/style.ts';
import { makeProject, repoRoot, runCli, writeTree } from './helpers.ts';

const typescriptProject = (files: Record<string, string | object> = {}) =>
  makeProject({ 'tsconfig.json': '{}', ...files }, { name: 'x', type: 'module' });

/** Statement lines ending in a semicolon, comments left out. */
const semicolonLines = (text: string) =>
  text.split('\n').filter((line) => !/^\s*(\/\/|\*|\/\*)/.test(line) && /;\s*$/.test(line));

/** The last line the project's own formatter (below) adds, so a test can tell which one ran. */
const ownMark = (name: string) => `// formatted by the project's ${name}\n`;

/**
 * The project's own Prettier: the repository's, wrapped so that what it formats ends with
 * ownMark('Prettier'). The bundled Prettier never writes that line.
 */
function installOwnPrettier(root: string): void {
  const real = pathToFileURL(join(repoRoot, 'node_modules', 'prettier', 'index.mjs')).href;
  writeTree(root, {
    'node_modules/prettier/package.json': { name: 'prettier', version: '3.0.0', main: 'index.mjs' },
    'node_modules/prettier/index.mjs': [
      `import * as real from ${JSON.stringify(real)};`,
      'export const resolveConfig = real.resolveConfig;',
      'export async function format(source, options) {',
      `  return (await real.format(source, options)) + ${JSON.stringify(ownMark('Prettier'))};`,
      '}',
      '',
    ].join('\n'),
  });
}

/** The project's own Biome: the repository's, wrapped to add ownMark('Biome') to its output. */
function installOwnBiome(root: string): void {
  const real = join(repoRoot, 'node_modules', '@biomejs', 'biome', 'bin', 'biome');
  writeTree(root, {
    'node_modules/@biomejs/biome/package.json': { name: '@biomejs/biome', version: '2.0.0' },
    'node_modules/@biomejs/biome/bin/biome': [
      "const { spawnSync } = require('node:child_process');",
      `const result = spawnSync(process.execPath, [${JSON.stringify(real)}, ...process.argv.slice(2)], {`,
      "  input: require('node:fs').readFileSync(0),",
      "  encoding: 'utf8',",
      '});',
      'process.stderr.write(result.stderr);',
      `process.stdout.write(result.status === 0 ? result.stdout + ${JSON.stringify(ownMark('Biome'))} : result.stdout);`,
      'process.exitCode = result.status ?? 1;',
      '',
    ].join('\n'),
  });
}

describe("the project's own style", () => {
  test('.prettierrc without Prettier installed: our bundled Prettier with its settings', async () => {
    const root = typescriptProject({ '.prettierrc': '{ "semi": false, "singleQuote": true }\n' });
    const result = await runCli(['-C', root, 'express', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    const adapter = readFileSync(join(root, 'db/express.ts'), 'utf8');
    assert.match(
      adapter,
      /^import type \{ ErrorRequestHandler, RequestHandler \} from 'express'$/m,
    );
    for (const file of ['express.ts', 'index.ts', 'runtime.ts', 'runtime-sqlite.ts']) {
      assert.deepEqual(semicolonLines(readFileSync(join(root, 'db', file), 'utf8')), [], file);
    }
  });

  test("the project's own Prettier, config and .editorconfig as it reads them", async () => {
    const root = typescriptProject({
      '.prettierrc.json': '{ "semi": false }\n',
      '.editorconfig': 'root = true\n[*]\nindent_style = tab\n',
    });
    installOwnPrettier(root);
    const result = await runCli(['-C', root, 'koa', '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    const adapter = readFileSync(join(root, 'db/koa.ts'), 'utf8');
    assert.ok(adapter.endsWith(ownMark('Prettier')), "the project's Prettier did not run");
    assert.match(adapter, /^import type \{ Middleware \} from "koa"$/m);
    assert.match(adapter, /^\t\S/m, 'indented with tabs');
    assert.deepEqual(semicolonLines(adapter), []);
  });

  test("biome.json: the project's own Biome when installed, else its settings", async () => {
    const biome = {
      javascript: { formatter: { semicolons: 'asNeeded', quoteStyle: 'single' } },
    };
    const bundled = typescriptProject({ 'biome.json': biome });
    assert.equal((await runCli(['-C', bundled, 'hono', '-y', '--no-install'])).code, 0);
    const own = typescriptProject({ 'biome.json': biome });
    installOwnBiome(own);
    assert.equal((await runCli(['-C', own, 'hono', '-y', '--no-install'])).code, 0);
    for (const root of [bundled, own]) {
      const adapter = readFileSync(join(root, 'db/hono.ts'), 'utf8');
      // Which formatter ran: the project's Biome marks its output, the bundled Prettier not.
      assert.equal(
        adapter.endsWith(ownMark('Biome')),
        root === own,
        `${root}: the wrong formatter`,
      );
      assert.match(adapter, /^import type \{ [^}]+ \} from 'hono'$/m);
      assert.match(adapter, /^\t\S/m, "Biome's default: tabs");
      assert.deepEqual(semicolonLines(adapter), []);
    }
  });

  // Rules of standard's kind that ESLint itself still has: its layout, and what it rejects.
  const standardRules = {
    semi: ['error', 'never'],
    quotes: ['error', 'single', { avoidEscape: true }],
    'no-void': 'error',
    'no-unreachable-loop': 'error',
  };
  const eslintDir = join(repoRoot, 'node_modules', 'eslint');

  test("an ESLint config with formatting rules: the project's ESLint fixes the files, a re-run keeps them", async () => {
    const root = makeProject(
      {
        'eslint.config.js': `// standard's style (neostandard)\nmodule.exports = [{ rules: ${JSON.stringify(standardRules)} }]\n`,
      },
      { name: 'x', devDependencies: { eslint: '^10.0.0' } },
    );
    mkdirSync(join(root, 'node_modules'));
    symlinkSync(eslintDir, join(root, 'node_modules', 'eslint'), 'dir');
    const targets = ['express', 'fastify', 'koa', 'hono', 'node-http', 'fetch', 'hooks'];
    const args = ['-C', root, ...targets.flatMap((t) => ['-f', t]), '-y', '--no-install'];
    assert.equal((await runCli(args)).code, 0);
    const adapter = readFileSync(join(root, 'db/express.js'), 'utf8');
    assert.deepEqual(semicolonLines(adapter), []);
    // What the project's own `eslint` (its pretest) says of every generated file: nothing.
    const { ESLint } = await import(pathToFileURL(join(eslintDir, 'lib', 'api.js')).href);
    const results = await new ESLint({ cwd: root }).lintFiles(['db/**/*.js']);
    const problems = results.flatMap(
      (r: { filePath: string; messages: { ruleId: string; line: number }[] }) =>
        r.messages.map((m) => `${r.filePath}:${m.line} ${m.ruleId}`),
    );
    assert.ok(results.length > 10, `linted ${results.length} files`);
    assert.deepEqual(problems, []);
    // A re-run brings no semicolons back: every file is as the project formatted it.
    const again = await runCli(args);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stdout, /Updated|Skipped/);
    assert.deepEqual(semicolonLines(readFileSync(join(root, 'db/express.js'), 'utf8')), []);
  });

  test('`standard` in devDependencies: its own lintText fixes the files; an ESLint config without formatting rules changes nothing', async () => {
    // A standard-engine package as standard ships it (lintText with fix), on the real ESLint.
    const standard = makeProject({}, { name: 'x', devDependencies: { standard: '^17.0.0' } });
    writeTree(standard, {
      'node_modules/standard/package.json': {
        name: 'standard',
        version: '17.1.2',
        main: 'index.js',
      },
      'node_modules/standard/index.js': [
        `const { ESLint } = require(${JSON.stringify(eslintDir)});`,
        `const rules = ${JSON.stringify(standardRules)};`,
        'exports.lintText = (text, { fix, filename }) =>',
        '  new ESLint({ fix, overrideConfigFile: true, overrideConfig: { rules } }).lintText(text, { filePath: filename });',
        '',
      ].join('\n'),
    });
    assert.equal((await runCli(['-C', standard, '-f', 'koa', '-y', '--no-install'])).code, 0);
    assert.deepEqual(semicolonLines(readFileSync(join(standard, 'db/koa.js'), 'utf8')), []);

    const plain = makeProject(
      { 'eslint.config.js': "module.exports = [{ rules: { 'no-unused-vars': 'error' } }]\n" },
      { name: 'x', devDependencies: { eslint: '^10.0.0' } },
    );
    mkdirSync(join(plain, 'node_modules'));
    symlinkSync(eslintDir, join(plain, 'node_modules', 'eslint'), 'dir');
    assert.equal((await runCli(['-C', plain, '-f', 'koa', '-y', '--no-install'])).code, 0);
    assert.notDeepEqual(semicolonLines(readFileSync(join(plain, 'db/koa.js'), 'utf8')), []);
  });

  test('.editorconfig alone: 4 spaces', async () => {
    const root = typescriptProject({ '.editorconfig': '[*.{js,ts}]\nindent_size = 4\n' });
    assert.equal((await runCli(['-C', root, 'express', '-y', '--no-install'])).code, 0);
    const adapter = readFileSync(join(root, 'db/express.ts'), 'utf8');
    assert.match(adapter, /^ {4}\S/m);
    assert.doesNotMatch(adapter, /^ {2}\S/m);
  });

  test('settings read as Prettier would', () => {
    assert.deepEqual(editorconfigToPrettier('[*]\nindent_style = tab\n[*.md]\nindent_size = 4\n'), {
      useTabs: true,
    });
    assert.deepEqual(biomeToPrettier({ formatter: { indentStyle: 'space', lineWidth: 120 } }), {
      useTabs: false,
      tabWidth: 2,
      printWidth: 120,
      singleQuote: false,
      semi: true,
      trailingComma: 'all',
      arrowParens: 'always',
      bracketSpacing: true,
    });
    assert.equal(biomeToPrettier({ formatter: { enabled: false } }), undefined);
  });
});

describe('re-runs after the user formatted or edited', () => {
  test('a file only reformatted counts as unchanged; an edit in another stays', async () => {
    const root = typescriptProject();
    assert.equal((await runCli(['-C', root, 'express', 'koa', '-y', '--no-install'])).code, 0);
    const prettier = await import('prettier');
    // The user formats every generated file their way, and edits one of them.
    for (const file of ['express.ts', 'koa.ts', 'index.ts', 'runtime.ts', 'runtime-sqlite.ts']) {
      const path = join(root, 'db', file);
      const text = readFileSync(path, 'utf8');
      writeFileSync(
        path,
        await prettier.format(text, { parser: 'typescript', semi: false, useTabs: true }),
      );
    }
    const koa = join(root, 'db/koa.ts');
    writeFileSync(koa, `${readFileSync(koa, 'utf8')}// my change\n`);
    const before = readFileSync(join(root, 'db/express.ts'), 'utf8');

    const again = await runCli(['-C', root, '-y', '--no-install']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^Skipped \(edited; --force overwrites\)\n {2}db\/koa\.ts\n\n/m);
    assert.match(again.stdout, /^Unchanged\n(?: {2}\S+\n)*? {2}db\/express\.ts\n/m);
    assert.equal(readFileSync(join(root, 'db/express.ts'), 'utf8'), before, 'formatting kept');
    assert.match(readFileSync(koa, 'utf8'), /\/\/ my change\n$/);
  });

  test('formatting-only differences: whitespace, semicolons, quotes, trailing commas, arrow parens', () => {
    assert.ok(sameCode("const a = f((x) => x, 'y');\n", 'const a = f(x => x, "y")\n'));
    assert.ok(sameCode('call(\n  a,\n  b,\n);\n', 'call(a, b)'));
    assert.ok(!sameCode('const a = 1;\n', 'const a = 2;\n'));
    assert.ok(!sameCode("f('x')", "f('y')"));
  });

  // Earlier versions hashed with sha256: of the exact text (0.1.0), then of the code without its
  // layout. Such a manifest still tells generated files from edited ones.
  for (const [version, hashed] of [
    ['0.1.0', (text: string) => text],
    ['0.1.x', withoutLayout],
  ] as const) {
    test(`a manifest from ${version} (sha256) still recognises its files`, async () => {
      const root = typescriptProject();
      assert.equal((await runCli(['-C', root, 'express', '-y', '--no-install'])).code, 0);
      const manifestPath = join(root, 'db-hooks.json');
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
      const { createHash } = await import('node:crypto');
      // Rewrite it as that version wrote it, with one file older than what this version generates.
      const older = readFileSync(join(root, 'db/index.ts'), 'utf8').replace(
        'Generated by',
        'Made by',
      );
      writeFileSync(join(root, 'db/index.ts'), older);
      for (const path of Object.keys(manifest.files)) {
        const text = hashed(readFileSync(join(root, path), 'utf8'));
        manifest.files[path] = `sha256-${createHash('sha256').update(text).digest('hex')}`;
      }
      writeFileSync(manifestPath, JSON.stringify(manifest));
      const result = await runCli(['-C', root, '-y', '--no-install']);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Updated\n {2}db\/index\.ts\n/m);
      assert.doesNotMatch(result.stdout, /Skipped/);
      assert.ok(existsSync(join(root, 'db/express.ts')));
      const rewritten = JSON.parse(readFileSync(manifestPath, 'utf8'));
      assert.match(rewritten.files['db/index.ts'], /^cyrb53-[0-9a-f]{14}$/);
    });
  }
});
