// Lint and type check as part of `npm test`, so README's one test command is everything CI runs.
// They are tests rather than steps before the suite: a lint error shows up in the summary
// instead of keeping every other test from running.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

function run(bin: string, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [join(root, bin), ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

test('Biome finds nothing to fix (npm run lint)', () => {
  const { status, output } = run('node_modules/@biomejs/biome/bin/biome', ['check', '.']);
  assert.equal(status, 0, output);
});

test('the sources type-check (npm run typecheck)', () => {
  const { status, output } = run('node_modules/typescript/bin/tsc', ['--noEmit']);
  assert.equal(status, 0, output);
});
