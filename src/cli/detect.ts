// Project facts, gathered once at the start of a run and passed down as one object: nothing
// else reads package.json, tsconfig.json, lockfiles or the manifest.
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from './errors.js';
import type { Language, ModuleFormat } from './language.js';
import { MANIFEST_FILE, type Manifest, parseManifest } from './manifest.js';
import {
  type DatabaseId,
  type Dependency,
  databases,
  type TargetDefinition,
  type TargetId,
  targets,
} from './targets.js';

export type PackageManager = 'npm' | 'pnpm' | 'yarn' | 'bun';
export const packageManagers: readonly PackageManager[] = ['npm', 'pnpm', 'yarn', 'bun'];

export interface PackageJson {
  name?: string;
  type?: string;
  packageManager?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [key: string]: unknown;
}

export interface ProjectFacts {
  /** Absolute path of the project, symlinks resolved as far as it exists. */
  root: string;
  /** Undefined in a directory with no package.json: a new app will be made there. */
  packageJson: PackageJson | undefined;
  /** A valid package name for a new app, from the directory name. */
  name: string;
  /** ts when tsconfig.json exists. */
  language: Language;
  /** From package.json "type": "module" → esm, anything else → cjs; a new app is esm. */
  moduleFormat: ModuleFormat;
  packageManager: PackageManager;
  /** Where the package manager was learnt from, for messages and tests. */
  packageManagerSource: 'lockfile' | 'packageManager' | 'user agent' | 'default';
  /** src/ exists: generated files default to src/db, else db. */
  hasSrc: boolean;
  /** Every package named in dependencies, devDependencies, peer or optional dependencies. */
  installed: ReadonlySet<string>;
  /** Targets whose framework is a dependency, in table order. */
  frameworks: TargetId[];
  /** Databases whose driver is a dependency, in table order. */
  drivers: DatabaseId[];
  /** db-hooks.json from an earlier run. */
  manifest: Manifest | undefined;
}

const lockfiles: ReadonlyArray<[string, PackageManager]> = [
  ['package-lock.json', 'npm'],
  ['npm-shrinkwrap.json', 'npm'],
  ['pnpm-lock.yaml', 'pnpm'],
  ['yarn.lock', 'yarn'],
  ['bun.lock', 'bun'],
  ['bun.lockb', 'bun'],
];

function asPackageManager(name: string | undefined): PackageManager | undefined {
  return packageManagers.find((pm) => pm === name);
}

/**
 * The package manager: a lockfile in the project or the nearest folder above that has one (a
 * workspace root), then package.json "packageManager" (corepack), then the tool that ran us
 * (npm_config_user_agent: `pnpm/9.1.0 npm/? node/v20…`), then npm.
 */
export function detectPackageManager(
  root: string,
  packageJson: PackageJson | undefined,
  env: NodeJS.ProcessEnv,
): { packageManager: PackageManager; source: ProjectFacts['packageManagerSource'] } {
  for (let dir = root; ; dir = dirname(dir)) {
    const found = lockfiles.find(([file]) => existsSync(join(dir, file)));
    if (found) return { packageManager: found[1], source: 'lockfile' };
    if (dirname(dir) === dir) break;
  }
  const field = asPackageManager(packageJson?.packageManager?.split('@')[0]);
  if (field) return { packageManager: field, source: 'packageManager' };
  const agent = asPackageManager(env.npm_config_user_agent?.split('/')[0]);
  if (agent) return { packageManager: agent, source: 'user agent' };
  return { packageManager: 'npm', source: 'default' };
}

/**
 * The project a run without --cwd works on, found as npm finds it: the nearest folder from
 * `start` upward that has a package.json. Undefined when there is none (a new app goes in `start`).
 */
export function findProjectRoot(start: string): string | undefined {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

/** What a fresh repository may hold before any code: a folder with only these is empty. */
const emptyFolderFiles =
  /^(\.git|\.gitignore|\.gitattributes|\.DS_Store|Thumbs\.db|README(\..*)?|LICENSE(\..*)?)$/i;

/** True when `dir` is missing or holds nothing but what a fresh repository has (as create-vite). */
export function isEmptyFolder(dir: string): boolean {
  if (!existsSync(dir)) return true;
  return readdirSync(dir).every((name) => emptyFolderFiles.test(name));
}

/** Resolves symlinks in the part of `path` that exists; the rest is appended as written. */
export function realpathDeep(path: string): string {
  const absolute = resolve(path);
  const missing: string[] = [];
  let current = absolute;
  while (!existsSync(current)) {
    const parent = dirname(current);
    if (parent === current) return absolute;
    missing.unshift(basename(current));
    current = parent;
  }
  return join(realpathSync(current), ...missing);
}

function readJson(file: string, label: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${label}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    const reason = (error as Error).message.split('\n')[0];
    throw new UsageError(`${label} is not valid JSON (${reason}); fix it and run again`);
  }
}

function packageName(dir: string): string {
  const name = basename(dir)
    .toLowerCase()
    .replace(/[^a-z0-9._~-]+/g, '-')
    .replace(/^[._-]+|-+$/g, '');
  return name || 'app';
}

/**
 * The targets whose packages the project lists, in table order. A framework found together with
 * the one it runs on (NestJS on Express) stands for both: the other is its platform.
 */
function detectFrameworks(installed: ReadonlySet<string>): TargetId[] {
  const found = (targets as readonly TargetDefinition[]).filter((target) =>
    target.detectedBy.some((name) => installed.has(name)),
  );
  const platforms = new Set(found.flatMap((target) => target.runsOn ?? []));
  return found.filter((target) => !platforms.has(target.id)).map((target) => target.id as TargetId);
}

/** Gathers every fact a run needs about the project at `cwd`. Throws UsageError on bad input. */
export function detectProject(cwd: string, env: NodeJS.ProcessEnv = process.env): ProjectFacts {
  const root = realpathDeep(cwd);
  const exists = existsSync(root);
  if (exists && !statSync(root).isDirectory()) {
    throw new UsageError(`--cwd '${cwd}' is not a directory`);
  }
  if (!exists) {
    // A new app in a directory still to be made: its nearest existing parent must be a folder.
    let parent = dirname(root);
    while (!existsSync(parent)) parent = dirname(parent);
    if (!statSync(parent).isDirectory()) {
      throw new UsageError(`--cwd '${cwd}' cannot be created: '${parent}' is a file`);
    }
  }
  const packageFile = join(root, 'package.json');
  let packageJson: PackageJson | undefined;
  if (existsSync(packageFile)) {
    const data = readJson(packageFile, 'package.json');
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new UsageError('package.json is not a JSON object; fix it and run again');
    }
    packageJson = data as PackageJson;
  }
  const installed = new Set<string>();
  for (const field of [
    'dependencies',
    'devDependencies',
    'peerDependencies',
    'optionalDependencies',
  ] as const) {
    const deps = packageJson?.[field];
    if (deps && typeof deps === 'object') for (const name of Object.keys(deps)) installed.add(name);
  }
  const manifestFile = join(root, MANIFEST_FILE);
  const manifest = existsSync(manifestFile)
    ? parseManifest(readFileSync(manifestFile, 'utf8'))
    : undefined;
  const { packageManager, source } = detectPackageManager(root, packageJson, env);
  const isDir = (path: string) => existsSync(path) && statSync(path).isDirectory();
  return {
    root,
    packageJson,
    name: packageName(root),
    language: existsSync(join(root, 'tsconfig.json')) ? 'ts' : 'js',
    moduleFormat: !packageJson || packageJson.type === 'module' ? 'esm' : 'cjs',
    packageManager,
    packageManagerSource: source,
    hasSrc: isDir(join(root, 'src')),
    installed,
    frameworks: detectFrameworks(installed),
    drivers: databases
      .filter((database) =>
        (database.dependencies as readonly Dependency[]).some(
          (d) => !d.typesOnly && installed.has(d.name),
        ),
      )
      .map((database) => database.id),
    manifest,
  };
}

/** The major version of a dependency, from the range package.json gives it (^4.21.2 → 4). */
export function dependencyMajor(facts: ProjectFacts, name: string): number | undefined {
  const json = facts.packageJson;
  const range = json?.dependencies?.[name] ?? json?.devDependencies?.[name];
  const major = /(\d+)/.exec(range ?? '')?.[1];
  return major === undefined ? undefined : Number(major);
}
