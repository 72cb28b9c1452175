// The bundle renders templates compiled at build time; from source, render.ts compiles them
// with EJS. Both must give the same bytes, for every target, database, language and module
// format, and for a new app's entry.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderAppFile, renderGeneratedFiles } from '../../src/cli/render.ts';
import { databaseIds, targetIds } from '../../src/cli/targets.ts';
import { makeProject, readJson, repoRoot, runCli, tempDir } from './helpers.ts';

const version = readJson(join(repoRoot, 'package.json')).version;

const variants = [
  { lang: 'ts', type: 'module', language: 'ts', moduleFormat: 'esm' },
  { lang: 'js', type: 'module', language: 'js', moduleFormat: 'esm' },
  { lang: 'js', type: 'commonjs', language: 'js', moduleFormat: 'cjs' },
] as const;

for (const variant of variants) {
  for (const database of databaseIds) {
    test(`built CLI output equals the source renderer: ${variant.language}/${variant.moduleFormat}, ${database}, every target`, async () => {
      const root = makeProject({}, { name: 'x', type: variant.type });
      const result = await runCli([
        '-C',
        root,
        '-f',
        targetIds.join(','),
        '-d',
        database,
        '--lang',
        variant.lang,
        '-y',
        '--no-install',
      ]);
      assert.equal(result.code, 0, result.stderr);
      const expected = await renderGeneratedFiles({
        targets: targetIds,
        database,
        style: { language: variant.language, moduleFormat: variant.moduleFormat },
        dir: 'db',
        version,
      });
      for (const file of expected) {
        assert.equal(readFileSync(join(root, file.path), 'utf8'), file.content, file.path);
      }
    });
  }
}

test('built CLI app entry equals the source renderer', async () => {
  for (const target of targetIds) {
    const root = join(tempDir(), 'app');
    const result = await runCli(['-C', root, '-f', target, '-y', '--no-install']);
    assert.equal(result.code, 0, result.stderr);
    const expected = await renderAppFile({
      targets: [target],
      database: 'sqlite',
      style: { language: 'js', moduleFormat: 'esm' },
      dir: 'src/db',
      version,
      target,
      path: 'src/app.js',
    });
    assert.equal(readFileSync(join(root, 'src/app.js'), 'utf8'), expected.content, target);
  }
});
