// The plan: every file a run would write with its status, and the dependencies to add. Pure (no
// disk, no network): the runner passes in the rendered files and what is on disk now, so a real
// run, --dry-run and the tests all use the same decisions.
import type { Answers } from './answers.js';
import type { ProjectFacts } from './detect.js';
import { sourceExtension } from './language.js';
import {
  hashContent,
  hashMatches,
  MANIFEST_FILE,
  type Manifest,
  sameCode,
  serializeManifest,
} from './manifest.js';
import type { GeneratedFile, GeneratedFileKind } from './render.js';
import {
  type Dependency,
  driverFiles,
  findOrm,
  findTarget,
  newAppDependencies,
  type OrmDefinition,
  type TargetId,
  typeScriptDependencies,
} from './targets.js';

export type FileStatus = 'created' | 'updated' | 'unchanged' | 'skipped';

/**
 * Why a file is skipped: `edited` — generated earlier and changed since (its hash no longer
 * matches the manifest); `exists` — a file create-db-hooks did not write is already there.
 */
export type SkipReason = 'edited' | 'exists';

export type PlannedFileKind =
  | GeneratedFileKind
  | 'package.json'
  | 'tsconfig'
  | 'pnpm-workspace'
  | 'gitignore'
  | 'manifest';

export interface PlannedFile {
  /** Project-relative, forward slashes. */
  path: string;
  kind: PlannedFileKind;
  /** What create-db-hooks would write. */
  content: string;
  /** What is there now; undefined when the file does not exist. */
  current: string | undefined;
  status: FileStatus;
  reason?: SkipReason;
  /** The target id of an adapter or app entry. */
  target?: TargetId;
}

export interface Plan {
  root: string;
  answers: Answers;
  /** Generated files first, then the new app's files, then the manifest. */
  files: PlannedFile[];
  manifest: Manifest;
  /** Dependencies the project lacks (a new app: all of them, already in its package.json). */
  dependencies: Dependency[];
  /** The same, for devDependencies: type packages, only for TypeScript. */
  devDependencies: Dependency[];
  /** Frameworks the targets import that the project lacks; installed only with consent. */
  frameworks: MissingFramework[];
  /** Set when the database differs from the manifest's: index is regenerated. */
  /** `unused`: the old database's driver files (src/runtime names), no longer imported. */
  databaseChange?: { from: string; to: string; unused: string[] };
  /** Set when the same database's driver differs from the manifest's (sqlite: --driver). */
  driverChange?: { from: string; to: string };
  /** The project's .gitignore as it is now, for the Next steps about what to keep out of git. */
  gitignore: string | undefined;
}

export interface PlanInput {
  facts: ProjectFacts;
  answers: Answers;
  /** --force: overwrite files edited since they were generated. */
  force: boolean;
  version: string;
  /** From renderGeneratedFiles, plus the app entry (kind `app`) for a new app. */
  rendered: readonly GeneratedFile[];
  /** Current text of each rendered path and of the new app's files; absent or undefined = none. */
  current: ReadonlyMap<string, string | undefined>;
  /** The package manager's version; undefined when unknown (it is not installed). */
  packageManagerVersion?: string;
  /** Edited files the user chose to replace, one by one (--force replaces them all). */
  overwrite?: ReadonlySet<string>;
}

/** Where a new app's entry goes. */
export function appEntryPath(answers: Pick<Answers, 'language' | 'moduleFormat'>): string {
  return `src/app${sourceExtension(answers)}`;
}

/** A framework an adapter imports that the project does not have (e.g. -f koa in an Express app). */
export interface MissingFramework {
  target: TargetId;
  /** The framework, and its types for TypeScript. */
  dependencies: Dependency[];
}

/**
 * The frameworks an existing project lacks for its targets. Without them the adapter cannot load
 * and tsc fails, so the run installs them (with consent in a terminal) or says what to install.
 */
export function missingFrameworks(
  answers: Answers,
  installed: ReadonlySet<string>,
): MissingFramework[] {
  if (answers.newApp) return []; // its package.json lists them already
  const out: MissingFramework[] = [];
  for (const id of answers.targets) {
    const target = findTarget(id)!;
    const detectedBy: readonly string[] = target.detectedBy;
    // node-http, fetch and hooks import nothing but Node: there is no framework to lack.
    if (detectedBy.length === 0 || detectedBy.some((name) => installed.has(name))) continue;
    const dependencies = (target.frameworkDependencies as readonly Dependency[]).filter(
      (dep) => !installed.has(dep.name) && (!dep.typesOnly || answers.language === 'ts'),
    );
    if (dependencies.length > 0) out.push({ target: id, dependencies });
  }
  return out;
}

/** Everything the chosen targets and database need, for this language; a new app adds more. */
export function requiredDependencies(answers: Answers): Dependency[] {
  const wanted: Dependency[] = [...driverFiles(answers.database, answers.driver).dependencies];
  for (const id of answers.targets) {
    const target = findTarget(id)!;
    wanted.push(...target.dependencies);
    if (answers.newApp) wanted.push(...target.frameworkDependencies);
  }
  for (const id of answers.orms ?? []) {
    const orm: OrmDefinition = findOrm(id)!;
    wanted.push(...orm.dependencies, ...(orm.databaseDependencies?.[answers.database] ?? []));
  }
  if (answers.newApp) wanted.push(...newAppDependencies[answers.language]);
  else if (answers.language === 'ts') wanted.push(...typeScriptDependencies);
  const seen = new Set<string>();
  return wanted.filter((dep) => {
    if (dep.typesOnly && answers.language !== 'ts') return false;
    if (seen.has(dep.name)) return false;
    seen.add(dep.name);
    return true;
  });
}

function byName(deps: readonly Dependency[]): Record<string, string> {
  return Object.fromEntries(
    [...deps].sort((a, b) => a.name.localeCompare(b.name)).map((d) => [d.name, d.version]),
  );
}

/** package.json of a new app: runnable with `npm start`, dependencies included. */
export function newAppPackageJson(
  name: string,
  answers: Answers,
  dependencies: readonly Dependency[],
  devDependencies: readonly Dependency[],
  pnpmAllowList = false,
): string {
  const entry = appEntryPath(answers);
  const scripted = dependencies.filter((dep) => dep.installScript);
  const scripts: Record<string, string> =
    answers.language === 'ts'
      ? { start: `tsx ${entry}`, typecheck: 'tsc --noEmit' }
      : { start: `node ${entry}` };
  const pkg = {
    name,
    version: '0.1.0',
    private: true,
    type: answers.moduleFormat === 'esm' ? 'module' : 'commonjs',
    scripts,
    engines: { node: '>=22.16' },
    dependencies: byName(dependencies),
    ...(devDependencies.length > 0 && { devDependencies: byName(devDependencies) }),
    ...(scripted.length > 0 && {
      allowScripts: Object.fromEntries(scripted.map((dep) => [dep.name, true])),
    }),
    // pnpm 10 reads its build allow-list here (pnpm 11 from pnpm-workspace.yaml).
    ...(scripted.length > 0 &&
      pnpmAllowList && { pnpm: { onlyBuiltDependencies: scripted.map((dep) => dep.name) } }),
  };
  return `${JSON.stringify(pkg, null, 2)}\n`;
}

/** pnpm-workspace.yaml of a new pnpm app: pnpm 11 and later read build permissions only here. */
export function newAppPnpmWorkspace(dependencies: readonly Dependency[]): string {
  const builds = dependencies.filter((dep) => dep.installScript).map((dep) => dep.name);
  return `allowBuilds:\n${builds.map((name) => `  ${name}: true\n`).join('')}`;
}

/**
 * tsconfig.json of a new TypeScript app: strict, Node's own module resolution; for NestJS also
 * the decorators it is written with, as `nest new` sets them.
 */
export function newAppTsconfig(answers: Pick<Answers, 'targets'>): string {
  const nest = answers.targets.includes('nestjs');
  const config = {
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      types: ['node'],
      ...(nest && { experimentalDecorators: true, emitDecoratorMetadata: true }),
    },
    include: ['src'],
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** What a new app keeps out of git: installed packages, and SQLite's database and journal files. */
export function gitignoreEntries(answers: Pick<Answers, 'database'>): string[] {
  return ['node_modules', ...(answers.database === 'sqlite' ? sqliteFiles : [])];
}

/** The SQLite database (SQLITE_PATH's default) and its write-ahead log and shared-memory files. */
export const sqliteFiles = ['app.db', 'app.db-wal', 'app.db-shm'];

/** Entries of `wanted` that a .gitignore does not list yet (exact lines, or `/name`). */
export function missingIgnores(gitignore: string | undefined, wanted: readonly string[]): string[] {
  const lines = new Set(
    (gitignore ?? '')
      .split(/\r?\n/)
      .map((line) => line.trim().replace(/^\//, '').replace(/\/$/, '')),
  );
  if (lines.has('app.db*') || lines.has('*.db*')) for (const file of sqliteFiles) lines.add(file);
  if (lines.has('*.db')) lines.add('app.db');
  return wanted.filter((entry) => !lines.has(entry));
}

/** A .gitignore with the missing entries added at its end; the user's lines stay as they are. */
export function withIgnores(gitignore: string | undefined, wanted: readonly string[]): string {
  const missing = missingIgnores(gitignore, wanted);
  if (gitignore === undefined) return `${missing.join('\n')}\n`;
  if (missing.length === 0) return gitignore;
  const base = gitignore === '' || gitignore.endsWith('\n') ? gitignore : `${gitignore}\n`;
  return `${base}${missing.join('\n')}\n`;
}

/**
 * A file's status. Identical → unchanged. Different and still as generated (its hash matches the
 * manifest) → updated. Different otherwise → skipped, unless --force.
 */
export function fileStatus(
  content: string,
  current: string | undefined,
  recordedHash: string | undefined,
  force: boolean,
): { status: FileStatus; reason?: SkipReason } {
  if (current === undefined) return { status: 'created' };
  // Only the layout differs (the user ran their formatter): nothing to write.
  if (sameCode(current, content)) return { status: 'unchanged' };
  if (hashMatches(recordedHash, current)) return { status: 'updated' };
  if (force) return { status: 'updated' };
  return { status: 'skipped', reason: recordedHash === undefined ? 'exists' : 'edited' };
}

export function buildPlan(input: PlanInput): Plan {
  const { facts, answers, force, version, rendered, current } = input;
  const recorded = facts.manifest?.files ?? {};
  const files: PlannedFile[] = [];
  const add = (path: string, kind: PlannedFileKind, content: string, target?: TargetId) => {
    const now = current.get(path);
    const status = fileStatus(content, now, recorded[path], force || !!input.overwrite?.has(path));
    files.push({ path, kind, content, current: now, ...status, ...(target && { target }) });
  };

  for (const file of rendered) add(file.path, file.kind, file.content, file.target);

  const required = requiredDependencies(answers);
  const missing = answers.newApp ? required : required.filter((d) => !facts.installed.has(d.name));
  const dependencies = missing.filter((d) => !d.typesOnly && !d.dev);
  const devDependencies = missing.filter((d) => d.typesOnly || d.dev);
  if (answers.newApp) {
    // pnpm allows build scripts in package.json up to 10 and in pnpm-workspace.yaml from 11;
    // when its version is unknown (not installed yet), both.
    const pnpmMajor = Number.parseInt(input.packageManagerVersion ?? '', 10);
    const pnpm = facts.packageManager === 'pnpm';
    const scripted = dependencies.some((dep) => dep.installScript);
    add(
      'package.json',
      'package.json',
      newAppPackageJson(
        facts.name,
        answers,
        dependencies,
        devDependencies,
        pnpm && !(pnpmMajor >= 11),
      ),
    );
    if (pnpm && scripted && !(pnpmMajor <= 10)) {
      add('pnpm-workspace.yaml', 'pnpm-workspace', newAppPnpmWorkspace(dependencies));
    }
    if (answers.language === 'ts') add('tsconfig.json', 'tsconfig', newAppTsconfig(answers));
    // Merged, not replaced: a fresh repository may have a .gitignore of its own.
    const gitignore = current.get('.gitignore');
    const merged = withIgnores(gitignore, gitignoreEntries(answers));
    files.push({
      path: '.gitignore',
      kind: 'gitignore',
      content: merged,
      current: gitignore,
      status: gitignore === undefined ? 'created' : gitignore === merged ? 'unchanged' : 'updated',
    });
  }

  // The manifest keeps every earlier entry (files of a target or language no longer chosen are
  // still the user's to delete) and records what this run writes. A skipped file keeps its old
  // hash, so it still reads as edited next time.
  const hashes: Record<string, string> = { ...recorded };
  for (const file of files) {
    if (['app', 'package.json', 'tsconfig', 'pnpm-workspace', 'gitignore'].includes(file.kind)) {
      continue;
    }
    if (file.status === 'skipped') continue;
    hashes[file.path] = hashContent(file.content);
  }
  const manifest: Manifest = {
    version,
    language: answers.language,
    moduleFormat: answers.moduleFormat,
    database: answers.database,
    ...(answers.driver !== undefined && { driver: answers.driver }),
    dir: answers.dir,
    targets: answers.targets,
    orms: answers.orms ?? [],
    files: hashes,
  };
  const manifestText = serializeManifest(manifest);
  const manifestNow = current.get(MANIFEST_FILE);
  files.push({
    path: MANIFEST_FILE,
    kind: 'manifest',
    content: manifestText,
    current: manifestNow,
    status:
      manifestNow === undefined
        ? 'created'
        : manifestNow === manifestText
          ? 'unchanged'
          : 'updated',
  });

  const previous = facts.manifest?.database;
  const driverBefore = previous && driverFiles(previous, facts.manifest?.driver);
  const driverNow = driverFiles(answers.database, answers.driver);
  return {
    root: facts.root,
    answers,
    files,
    manifest,
    dependencies,
    devDependencies,
    frameworks: missingFrameworks(answers, facts.installed),
    gitignore: current.get('.gitignore'),
    ...(previous !== undefined &&
      previous !== answers.database && {
        databaseChange: {
          from: previous,
          to: answers.database,
          unused: driverBefore ? driverBefore.runtimeFiles : [],
        },
      }),
    ...(previous === answers.database &&
      driverBefore &&
      driverBefore.id !== driverNow.id && {
        driverChange: { from: driverBefore.id!, to: driverNow.id! },
      }),
  };
}

/** Files a real run writes: created and updated ones. */
export function filesToWrite(plan: Plan): PlannedFile[] {
  return plan.files.filter((file) => file.status === 'created' || file.status === 'updated');
}
