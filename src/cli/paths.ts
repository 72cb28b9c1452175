// Where create-db-hooks' own files are, whether it runs from src/cli (tests, tsx) or from the
// bundle in dist/. Kept apart from render.ts so that --help and --version do not load EJS.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's own root (holds templates/ and src/runtime/), from src/cli or dist/. */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'templates'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('create-db-hooks: cannot find its templates folder.');
    dir = parent;
  }
  return dir;
})();

let cachedVersion: string | undefined;

/** create-db-hooks' own version, from its package.json. */
export function ownVersion(): string {
  cachedVersion ??= (
    JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }
  ).version;
  return cachedVersion;
}
