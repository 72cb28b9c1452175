// Effects on disk: every path stays inside the project (also through symlinks), and a write is
// all or nothing.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UsageError } from '../../src/cli/errors.ts';
import { assertWritable, readIfExists, writeFilesAtomically } from '../../src/cli/write.ts';
import { contents, tempDir } from './helpers.ts';

const usage = (message: RegExp) => (error: unknown) =>
  error instanceof UsageError && message.test(error.message);

describe('assertWritable', () => {
  test('lexically outside the project', () => {
    const root = tempDir();
    assert.throws(() => assertWritable(root, '../x'), usage(/outside the project/));
    assert.throws(() => assertWritable(root, '/etc/passwd'), usage(/outside the project/));
    assert.throws(() => assertWritable(root, 'a/../../x'), usage(/outside the project/));
  });

  test('a symlink to a folder inside the project is fine; one leading out is not', () => {
    const root = tempDir();
    mkdirSync(join(root, 'real'));
    symlinkSync(join(root, 'real'), join(root, 'inside'));
    symlinkSync(tempDir(), join(root, 'outside'));
    assert.equal(assertWritable(root, 'inside/db', { directory: true }), join(root, 'inside/db'));
    assert.throws(
      () => assertWritable(root, 'outside/db', { directory: true }),
      usage(/'outside' is a symlink to /),
    );
  });

  test('a broken symlink, a file where a folder goes, a folder where a file goes', () => {
    const root = tempDir();
    symlinkSync(join(root, 'nowhere'), join(root, 'broken'));
    writeFileSync(join(root, 'file'), '');
    mkdirSync(join(root, 'folder'));
    assert.throws(() => assertWritable(root, 'broken/x.ts'), usage(/broken symlink/));
    assert.throws(() => assertWritable(root, 'file/x.ts'), usage(/'file' is a file/));
    assert.throws(() => assertWritable(root, 'folder'), usage(/it is a directory/));
  });
});

describe('writeFilesAtomically', () => {
  test('writes every file, making folders, leaving no temporary files', () => {
    const root = tempDir();
    writeFilesAtomically(root, [
      { path: 'src/db/a.ts', content: 'a\n' },
      { path: 'db-hooks.json', content: '{}\n' },
    ]);
    assert.deepEqual(contents(root), {
      'db-hooks.json': '{}\n',
      'src/': '',
      'src/db/': '',
      'src/db/a.ts': 'a\n',
    });
  });

  test('replaces an existing file', () => {
    const root = tempDir();
    writeFileSync(join(root, 'x.ts'), 'old\n');
    writeFilesAtomically(root, [{ path: 'x.ts', content: 'new\n' }]);
    assert.equal(readFileSync(join(root, 'x.ts'), 'utf8'), 'new\n');
    assert.deepEqual(readdirSync(root), ['x.ts']);
  });

  test('one bad path: nothing written, folders it made removed', () => {
    const root = tempDir();
    writeFileSync(join(root, 'blocked'), '');
    writeFileSync(join(root, 'keep.ts'), 'mine\n');
    const before = contents(root);
    assert.throws(
      () =>
        writeFilesAtomically(root, [
          { path: 'keep.ts', content: 'overwritten?\n' },
          { path: 'new/a.ts', content: 'a\n' },
          { path: 'blocked/b.ts', content: 'b\n' },
        ]),
      usage(/'blocked' is a file/),
    );
    assert.deepEqual(contents(root), before);
  });
});

test('readIfExists: text of a file, undefined for a missing path or a folder', () => {
  const root = tempDir();
  writeFileSync(join(root, 'a'), 'x');
  mkdirSync(join(root, 'd'));
  assert.equal(readIfExists(root, 'a'), 'x');
  assert.equal(readIfExists(root, 'missing'), undefined);
  assert.equal(readIfExists(root, 'd'), undefined);
});
