// The real frameworks and drivers the end-to-end projects run on: the dependencies of
// test/e2e/deps/package.json, an npm workspace of the repository, so `npm install` at the root
// installs them (hoisted into the root node_modules, one better-sqlite3 build for everything).
// Each test project gets a node_modules of symlinks to exactly those packages, so a case costs
// no install.
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const workspaceDir = join(repoRoot, 'test', 'e2e', 'deps');

/** The package names the workspace declares (aliases such as express4 included). */
function declared(): string[] {
  const manifest = JSON.parse(readFileSync(join(workspaceDir, 'package.json'), 'utf8'));
  return Object.keys(manifest.dependencies ?? {});
}

/**
 * Where npm put a package of the workspace: its own node_modules when a version conflict kept
 * it there, else a node_modules further up (the root), as Node's resolution finds it.
 */
function packageDir(name: string): string {
  for (let dir = workspaceDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new Error(
    `The end-to-end dependency ${name} is not installed: run \`npm install\` at the repository root.`,
  );
}

/** Checks that every dependency is installed; throws with what to run if one is not. */
export function installDependencies(): void {
  for (const name of declared()) packageDir(name);
}

/**
 * Fills `projectDir/node_modules` with symlinks to the workspace's packages. `aliases` maps a
 * package name in the project to another package of the workspace (express → express4).
 */
export function linkDependencies(projectDir: string, aliases: Record<string, string> = {}): void {
  const target = join(projectDir, 'node_modules');
  const aliased = new Set(Object.values(aliases));
  for (const name of declared()) {
    if (aliased.has(name)) continue;
    mkdirSync(join(target, name, '..'), { recursive: true });
    // On a Node.js line other than the one npm built better-sqlite3 for, the line's own build
    // (test/support/node-lines.ts): the apps run with a bare environment, without the shim.
    const line = name === 'better-sqlite3' ? process.env.CDH_BETTER_SQLITE3_PACKAGE : undefined;
    symlinkSync(line ?? packageDir(aliases[name] ?? name), join(target, name), 'dir');
  }
}

/** A file of an installed package, e.g. binary('typescript', 'bin/tsc'). */
export function binary(name: string, relativePath: string): string {
  return join(packageDir(name), relativePath);
}
