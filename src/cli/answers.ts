// The answers a run needs, from flags, then the manifest, then detection, then defaults. Pure:
// checks the flags, fills in what it can, and says what is still missing; prompts.ts asks for
// the rest in a terminal, finishAnswers() fails with exit 2 when there is none.
import type { ProjectFacts } from './detect.js';
import { oneOf, UsageError } from './errors.js';
import type { Language, ModuleFormat } from './language.js';
import { normaliseProjectPath } from './manifest.js';
import {
  type DatabaseId,
  databaseIds,
  driversOf,
  findDatabase,
  type OrmId,
  ormIds,
  type TargetId,
  targetIds,
} from './targets.js';

/** The command line, as commander parsed it. */
export interface CliOptions {
  /** Unset: the nearest folder upward with a package.json, else where it runs. */
  cwd?: string;
  framework?: string[];
  orm?: string[];
  database?: string;
  driver?: string;
  lang?: string;
  dir?: string;
  yes?: boolean;
  dryRun?: boolean;
  force?: boolean;
  install: boolean;
  list?: boolean;
}

export interface Answers {
  /** Every target the project has after this run: the manifest's, then the new ones. */
  targets: TargetId[];
  /** ORMs bound to `db`: the manifest's, then the new ones. */
  orms?: OrmId[];
  database: DatabaseId;
  /** --driver, for a database with a choice of drivers (sqlite); unset: the default one. */
  driver?: string;
  language: Language;
  moduleFormat: ModuleFormat;
  /** Where generated files go, project-relative, forward slashes. */
  dir: string;
  /** No package.json: a minimal runnable app is made around the generated files. */
  newApp: boolean;
}

/** What flags, manifest and detection settle before any prompt. */
export interface Draft {
  /** Targets named by --framework, validated, in the order given. */
  flagTargets: TargetId[];
  /** Targets from an earlier run; always kept. */
  manifestTargets: TargetId[];
  /** Frameworks found in package.json. */
  detectedTargets: TargetId[];
  /** ORMs named by --orm; undefined when the flag was not given (a terminal asks). */
  flagOrms: OrmId[] | undefined;
  /** ORMs from an earlier run; always kept. */
  manifestOrms: OrmId[];
  database: DatabaseId;
  databaseSource: 'flag' | 'manifest' | 'detected' | 'default';
  /** The --driver flag's, or the manifest's when it is for the same database. */
  driver: string | undefined;
  driverSource: 'flag' | 'manifest' | 'detected' | 'default';
  language: Language;
  /** `detected` for a new app means nobody chose yet: a terminal asks. */
  languageSource: 'flag' | 'manifest' | 'detected';
  moduleFormat: ModuleFormat;
  dir: string;
  newApp: boolean;
}

export function parseTargetList(values: readonly string[]): TargetId[] {
  const ids: TargetId[] = [];
  for (const value of values.flatMap((v) => v.split(','))) {
    const id = value.trim().toLowerCase();
    if (id === '') continue;
    if (!targetIds.includes(id as TargetId)) {
      throw new UsageError(`unknown framework '${value.trim()}' (valid: ${targetIds.join(', ')})`);
    }
    if (!ids.includes(id as TargetId)) ids.push(id as TargetId);
  }
  if (ids.length === 0) {
    throw new UsageError(`--framework needs at least one id (valid: ${targetIds.join(', ')})`);
  }
  return ids;
}

export function parseOrmList(values: readonly string[]): OrmId[] {
  const ids: OrmId[] = [];
  for (const value of values.flatMap((v) => v.split(','))) {
    const id = value.trim().toLowerCase();
    if (id === '' || id === 'none') continue;
    if (!ormIds.includes(id as OrmId)) {
      throw new UsageError(`unknown ORM '${value.trim()}' (valid: ${ormIds.join(', ')})`);
    }
    if (!ids.includes(id as OrmId)) ids.push(id as OrmId);
  }
  return ids;
}

function parseDatabase(value: string): DatabaseId {
  const database = findDatabase(value.trim().toLowerCase());
  if (!database) {
    throw new UsageError(`unknown database '${value}' (valid: ${databaseIds.join(', ')})`);
  }
  return database.id;
}

/** --driver: one of the database's drivers; a database without a choice takes none. */
function parseDriver(value: string, database: DatabaseId): string {
  const id = value.trim().toLowerCase();
  const drivers = driversOf(database).map((d) => d.id);
  const sqlite = driversOf('sqlite').map((d) => d.id);
  if (drivers.length === 0) {
    throw new UsageError(
      `--driver '${value}' is for sqlite (valid: ${sqlite.join(', ')}); ${database} has one driver: leave --driver out`,
    );
  }
  if (!drivers.includes(id)) {
    throw new UsageError(`unknown driver '${value}' (valid: ${drivers.join(', ')})`);
  }
  return id;
}

function parseLanguage(value: string): Language {
  const lang = value.trim().toLowerCase();
  if (lang !== 'ts' && lang !== 'js')
    throw new UsageError(`unknown --lang '${value}' (valid: ts, js)`);
  return lang;
}

function parseDir(value: string): string {
  const dir = normaliseProjectPath(value);
  if (dir === undefined) {
    throw new UsageError(`--dir '${value}' is outside the project; give a path inside it`);
  }
  if (dir === '.') {
    throw new UsageError(`--dir '${value}' is the project root; give a folder inside it`);
  }
  return dir;
}

/** Checks every flag and settles what flags, manifest and detection can. */
export function draftAnswers(options: CliOptions, facts: ProjectFacts): Draft {
  const manifest = facts.manifest;
  const flagTargets = options.framework ? parseTargetList(options.framework) : [];
  let database: DatabaseId;
  let databaseSource: Draft['databaseSource'];
  if (options.database !== undefined) {
    database = parseDatabase(options.database);
    databaseSource = 'flag';
  } else if (manifest) {
    database = manifest.database;
    databaseSource = 'manifest';
  } else if (facts.drivers.length === 1) {
    database = facts.drivers[0]!;
    databaseSource = 'detected';
  } else {
    database = 'sqlite';
    databaseSource = 'default';
  }
  let driver: string | undefined;
  let driverSource: Draft['driverSource'] = 'default';
  if (options.driver !== undefined) {
    driver = parseDriver(options.driver, database);
    driverSource = 'flag';
  } else if (manifest !== undefined && manifest.database === database) {
    driver = manifest.driver; // none written: the default
    driverSource = 'manifest';
  } else {
    // A project that has a driver's package already (better-sqlite3) uses that driver.
    const found = driversOf(database).find((d) =>
      d.dependencies.some((dep) => !dep.typesOnly && facts.installed.has(dep.name)),
    );
    if (found) {
      driver = found.id;
      driverSource = 'detected';
    }
  }
  const language =
    options.lang !== undefined
      ? parseLanguage(options.lang)
      : (manifest?.language ?? facts.language);
  const newApp = facts.packageJson === undefined;
  const dir =
    options.dir !== undefined
      ? parseDir(options.dir)
      : (manifest?.dir ?? (facts.hasSrc || newApp ? 'src/db' : 'db'));
  return {
    flagTargets,
    manifestTargets: manifest?.targets ?? [],
    detectedTargets: facts.frameworks,
    flagOrms: options.orm ? parseOrmList(options.orm) : undefined,
    manifestOrms: manifest?.orms ?? [],
    database,
    databaseSource,
    driver,
    driverSource,
    language,
    languageSource: options.lang !== undefined ? 'flag' : manifest ? 'manifest' : 'detected',
    // A fact of the project, not an answer: .js files must match package.json "type" today.
    moduleFormat: facts.moduleFormat,
    dir,
    newApp,
  };
}

/** Without repeats, first mention wins: the manifest's, then the new ones in the order given. */
export function uniqueTargets(ids: Iterable<TargetId>): TargetId[] {
  return [...new Set(ids)];
}

/** The answers with no one to ask: missing targets are an error naming --framework. */
export function finishAnswers(draft: Draft): Answers {
  let chosen: TargetId[] = [...draft.manifestTargets, ...draft.flagTargets];
  if (chosen.length === 0) {
    if (draft.detectedTargets.length === 1) {
      chosen = draft.detectedTargets;
    } else {
      const found =
        draft.detectedTargets.length > 1
          ? `found ${oneOf(draft.detectedTargets).replace(' or ', ' and ')} in package.json; `
          : '';
      throw new UsageError(
        `${found}no framework chosen: pass --framework <ids> (valid: ${targetIds.join(', ')})`,
      );
    }
  }
  return withTargets(draft, chosen, draft.database, draft.language, draft.flagOrms, draft.driver);
}

export function withTargets(
  draft: Draft,
  chosen: TargetId[],
  database: DatabaseId,
  language: Language = draft.language,
  chosenOrms: readonly OrmId[] = draft.flagOrms ?? [],
  driver: string | undefined = draft.driver,
): Answers {
  // A driver is kept only for a database that has a choice of them, and only when not the default.
  const drivers = driversOf(database);
  const kept = drivers.some((d) => d.id === driver) && driver !== drivers[0]?.id;
  return {
    targets: uniqueTargets([...draft.manifestTargets, ...chosen]),
    orms: [...new Set([...draft.manifestOrms, ...chosenOrms])],
    database,
    ...(kept && { driver }),
    language,
    moduleFormat: draft.moduleFormat,
    dir: draft.dir,
    newApp: draft.newApp,
  };
}
