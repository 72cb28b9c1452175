// The real frameworks and drivers, installed from npm once into .tmp/e2e-deps (git-ignored) from
// test/e2e/deps/package-lock.json, and reinstalled only when that lockfile changes. Each test
// project gets a node_modules of symlinks into it, so a case costs no install.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const manifestDir = join(repoRoot, 'test', 'e2e', 'deps');
const cacheDir = join(repoRoot, '.tmp', 'e2e-deps');
const modules = join(cacheDir, 'node_modules');

function version(dir: string): string | undefined {
  const file = join(dir, 'package.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).version : undefined;
}

/** Installs the dependencies if needed; returns the shared node_modules. */
export function installDependencies(): string {
  const lock = readFileSync(join(manifestDir, 'package-lock.json'));
  const manifest = readFileSync(join(manifestDir, 'package.json'));
  const stamp = createHash('sha256').update(manifest).update(lock).digest('hex');
  const stampFile = join(cacheDir, '.stamp');
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return modules;

  rmSync(cacheDir, { recursive: true, force: true });
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(join(cacheDir, 'package.json'), manifest);
  writeFileSync(join(cacheDir, 'package-lock.json'), lock);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  execFileSync(npm, ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: cacheDir,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  // better-sqlite3 is native. The repository's own copy was built for this Node by `npm ci`:
  // reuse that build when the versions match (a source build takes minutes on two cores).
  const ours = join(repoRoot, 'node_modules', 'better-sqlite3');
  const theirs = join(modules, 'better-sqlite3');
  if (version(ours) === version(theirs) && existsSync(join(ours, 'build', 'Release'))) {
    cpSync(join(ours, 'build'), join(theirs, 'build'), { recursive: true });
  } else {
    execFileSync(npm, ['rebuild', 'better-sqlite3', '--loglevel=error'], {
      cwd: cacheDir,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  writeFileSync(stampFile, stamp);
  return modules;
}

/**
 * Fills `projectDir/node_modules` with symlinks to the shared packages. `aliases` maps a
 * package name in the project to another package in the cache (express → express4).
 */
export function linkDependencies(projectDir: string, aliases: Record<string, string> = {}): void {
  const target = join(projectDir, 'node_modules');
  const aliased = new Set(Object.values(aliases));
  const link = (name: string, from: string) => {
    mkdirSync(join(target, name, '..'), { recursive: true });
    symlinkSync(join(modules, from), join(target, name), 'dir');
  };
  for (const entry of readdirSync(modules)) {
    if (entry.startsWith('.')) continue;
    const names = entry.startsWith('@')
      ? readdirSync(join(modules, entry)).map((child) => `${entry}/${child}`)
      : [entry];
    for (const name of names) {
      if (aliased.has(name)) continue;
      link(name, aliases[name] ?? name);
    }
  }
  // Binaries the tests call (tsc) are run from the cache directly.
}

export function binary(name: string, relativePath: string): string {
  return join(modules, name, relativePath);
}
