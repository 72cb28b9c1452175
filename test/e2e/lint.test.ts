// The code users own passes the linters they run: every target's (and ORM's) generated files, for both
// databases, under typescript-eslint's recommendedTypeChecked (TypeScript) and Biome's default
// lint rules and import order (TypeScript and both JavaScript module formats). The real linters
// from npm, in a project of their own.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { OutputStyle } from '../../src/cli/language.ts';
import { renderGeneratedFiles } from '../../src/cli/render.ts';
import { databaseIds, orms, targetIds } from '../../src/cli/targets.ts';
import { binary, linkDependencies, repoRoot } from './support/deps.ts';

const run = promisify(execFile);

const eslintConfig = `import tseslint from 'typescript-eslint';

export default tseslint.config(...tseslint.configs.recommendedTypeChecked, {
  languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
});
`;

const tsconfig = {
  compilerOptions: {
    target: 'ES2022',
    lib: ['ES2022', 'DOM'],
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ['node'],
  },
  include: ['src'],
};

/** A project holding every target's files for one database (and driver) and language. */
async function lintProject(database: string, style: OutputStyle, driver?: string): Promise<string> {
  mkdirSync(join(repoRoot, '.tmp'), { recursive: true });
  const dir = mkdtempSync(join(repoRoot, '.tmp', 'lint-'));
  const type = style.moduleFormat === 'cjs' ? 'commonjs' : 'module';
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'lint', private: true, type }));
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
  writeFileSync(join(dir, 'eslint.config.mjs'), eslintConfig);
  // Biome's defaults, not this repository's configuration further up.
  writeFileSync(join(dir, 'biome.json'), '{}\n');
  const files = await renderGeneratedFiles({
    targets: targetIds,
    orms: orms
      .filter((orm) => (orm.databases as readonly string[]).includes(database))
      .map((orm) => orm.id),
    database: database as (typeof databaseIds)[number],
    driver,
    style,
    dir: 'src/db',
    version: '0.0.0-lint',
  });
  for (const file of files) {
    mkdirSync(dirname(join(dir, file.path)), { recursive: true });
    writeFileSync(join(dir, file.path), file.content);
  }
  // node:sqlite's types, as @types/node 22 (what the CLI gives TypeScript projects) has them;
  // this project's @types/node is 20's, which has none.
  if (driver === 'node:sqlite' && style.language === 'ts') {
    const types = readFileSync(join(repoRoot, 'src', 'types', 'node-sqlite.d.ts'), 'utf8');
    writeFileSync(join(dir, 'src', 'node-sqlite.d.ts'), types);
  }
  linkDependencies(dir);
  return dir;
}

/** Runs a linter; resolves with its output when it reports problems, undefined when clean. */
async function problems(dir: string, bin: string, args: string[]): Promise<string | undefined> {
  try {
    await run(process.execPath, [bin, ...args], { cwd: dir, timeout: 120_000 });
    return undefined;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    return `${stdout ?? ''}${stderr ?? ''}` || String(error);
  }
}

const biome = binary('@biomejs/biome', 'bin/biome');
const eslint = binary('eslint', 'bin/eslint.js');
const styles: OutputStyle[] = [
  { language: 'ts', moduleFormat: 'esm' },
  { language: 'js', moduleFormat: 'esm' },
  { language: 'js', moduleFormat: 'cjs' },
];

const setups: { database: string; driver?: string }[] = [
  ...databaseIds.map((database) => ({ database })),
  { database: 'sqlite', driver: 'node:sqlite' },
];

describe('generated code passes the linters users run', { concurrency: 2 }, () => {
  for (const { database, driver } of setups) {
    for (const style of styles) {
      const name = `${driver ?? database} × ${style.language === 'ts' ? 'ts' : `js-${style.moduleFormat}`}`;
      test(name, async () => {
        const dir = await lintProject(database, style, driver);
        try {
          // Biome's default rules and import order; formatting is the project's own choice.
          const biomeSays = await problems(dir, biome, [
            'check',
            '--formatter-enabled=false',
            'src',
          ]);
          assert.equal(biomeSays, undefined, `biome:\n${biomeSays}`);
          if (style.language === 'ts') {
            const eslintSays = await problems(dir, eslint, ['src']);
            assert.equal(eslintSays, undefined, `typescript-eslint:\n${eslintSays}`);
          }
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    }
  }
});
