// The runtime files are copied into users' projects and, for JavaScript projects, stripped of
// their types by sucrase and rewritten to CommonJS by a line-based rewriter. This checks that they
// only use the module forms that rewriter understands and that the stripped ESM really runs.
import assert from 'node:assert/strict';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { transform } from 'sucrase';

const FILES = readdirSync(join('src', 'runtime')).map((file) => file.replace(/\.ts$/, ''));
const ALLOWED_IMPORT = [
  /^import \w+ from '[^']+';$/,
  /^import \{[^}]*\} from '[^']+';$/,
  /^import type \{[^}]*\} from '[^']+';$/,
];
const ALLOWED_EXPORT =
  /^export (class|abstract class|function|async function|const|interface|type) |^export (type )?(\{[^}]*\}|\*) from '[^']+';$/;

test('runtime sources use only the module forms the JavaScript conversion understands', () => {
  for (const name of FILES) {
    const source = readFileSync(join('src', 'runtime', `${name}.ts`), 'utf8');
    assert.match(source, /^\/\*\*\n \* db-hooks /, `${name}.ts starts with its doc comment`);
    const joined = source.replace(
      /^(import type|import|export type|export) \{([^}]*)\}/gm,
      (_m, verb, names: string) => {
        return `${verb} {${names.replace(/\s+/g, ' ')}}`;
      },
    );
    for (const line of joined.split('\n')) {
      if (line.startsWith('import ')) {
        assert.ok(
          ALLOWED_IMPORT.some((form) => form.test(line)),
          `${name}.ts: import form: ${line}`,
        );
        const specifier = /'([^']+)'/.exec(line)![1]!;
        if (specifier.startsWith('.')) assert.match(specifier, /^\.\/runtime(-[\w-]+)?\.js$/);
      }
      if (line.startsWith('export ')) assert.match(line, ALLOWED_EXPORT, `${name}.ts: ${line}`);
    }
    for (const forbidden of [
      /export default/,
      /import\.meta/,
      /\benum\s+\w+/,
      /\bnamespace\s+\w+/,
      /^\s*@\w+/m,
      /constructor\((private|public|protected|readonly)\s/,
      // TypeScript's `private` is a public field in JavaScript: #private keeps it private.
      /^\s*(readonly\s+)?private\s/m,
    ]) {
      assert.doesNotMatch(source, forbidden, `${name}.ts must not use ${forbidden}`);
    }
  }
});

test('the runtime stripped to JavaScript by sucrase loads as ESM and serves a request', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cdh-portable-'));
  try {
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    symlinkSync(resolve('node_modules'), join(dir, 'node_modules'));
    for (const name of FILES) {
      const source = readFileSync(join('src', 'runtime', `${name}.ts`), 'utf8');
      const { code } = transform(source, { transforms: ['typescript'], disableESTransforms: true });
      // Inline `type` specifiers are stripped with the rest of the types.
      assert.doesNotMatch(code, /^import \{[^}]*\btype\s/m, `${name}.js keeps a type import`);
      writeFileSync(join(dir, `${name}.js`), code);
    }
    const sqlite = await import(join(dir, 'runtime-sqlite.js'));
    const core = await import(join(dir, 'runtime.js'));
    const postgres = await import(join(dir, 'runtime-postgres.js'));
    assert.equal(typeof postgres.PostgresDatabase, 'function');
    const db = new sqlite.SqliteDatabase({ path: join(dir, 'app.db') });
    assert.ok(db instanceof core.Database, 'db instanceof core.Database');
    const scope = core.createScope(db);
    await scope.connect();
    const row = await scope.run(() => db.atomic(() => db.get('SELECT 1 AS one')));
    await scope.release();
    assert.deepEqual(row, { one: 1 });
    assert.equal(db.stats().inUse, 0);
    await assert.rejects(
      scope.run(() => db.get('SELECT 1')),
      core.ScopeReleasedError,
    );
    await db.closePool();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
