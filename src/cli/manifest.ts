// db-hooks.json at the project root: the answers of the last run and a hash of every file it
// generated. A re-run reads it to know the project (as shadcn's components.json does) and to tell
// a file still as generated (safe to update) from one the user edited (never overwritten
// without --force).
import { posix } from 'node:path';
import * as v from 'valibot';
import { oneOf, UsageError } from './errors.js';
import { fingerprint } from './fingerprint.js';
import type { Language, ModuleFormat } from './language.js';
import {
  type DatabaseId,
  databaseIds,
  driversOf,
  type OrmId,
  ormIds,
  type TargetId,
  targetIds,
} from './targets.js';

export const MANIFEST_FILE = 'db-hooks.json';

export interface Manifest {
  /** The create-db-hooks version that wrote it. */
  version: string;
  language: Language;
  moduleFormat: ModuleFormat;
  database: DatabaseId;
  /** The database's driver when it is not the default one (sqlite: node:sqlite). */
  driver?: string;
  /** Where generated files go, relative to the project root, forward slashes. */
  dir: string;
  targets: TargetId[];
  /** --orm: ORMs bound to `db` (absent from manifests written before there were any). */
  orms?: OrmId[];
  /** Project-relative path → `cyrb53-<hex>` of the content create-db-hooks wrote there. */
  files: Record<string, string>;
}

/**
 * The code with its layout taken out: whitespace, semicolons, the quote style, trailing commas
 * and brackets around a lone arrow parameter — what Prettier, Biome and editors change when they
 * format. Two texts that differ only in formatting give the same string.
 */
export function withoutLayout(content: string): string {
  const flat = content
    // Not \s: the Unicode class is several times slower on these files, and formatters only
    // ever write these.
    .replace(/[ \t\n\r\f\v]+/g, '')
    .replace(/;/g, '')
    .replace(/"/g, "'")
    .replace(/,(?=[)\]}])/g, '')
    .replace(/\((\w+)\)=>/g, '$1=>');
  return dropArrowBodyBrackets(flat);
}

/** `=>(a?b:c)` → `=>a?b:c`: formatters disagree on brackets around an arrow's body. */
function dropArrowBodyBrackets(code: string): string {
  const drop: number[] = [];
  for (let at = code.indexOf('=>('); at !== -1; at = code.indexOf('=>(', at + 1)) {
    let depth = 0;
    for (let i = at + 2; i < code.length; i++) {
      if (code[i] === '(') depth++;
      else if (code[i] === ')' && --depth === 0) {
        drop.push(at + 2, i);
        break;
      }
    }
  }
  if (drop.length === 0) return code;
  drop.sort((a, b) => a - b);
  let out = '';
  let from = 0;
  for (const i of drop) {
    out += code.slice(from, i);
    from = i + 1;
  }
  return out + code.slice(from);
}

/** True when two texts differ at most in formatting. */
export function sameCode(a: string, b: string): boolean {
  return a === b || withoutLayout(a) === withoutLayout(b);
}

/**
 * `cyrb53-<hex>` of a file's code without its layout, so a file the user (or their formatter)
 * only reformatted still reads as generated, never as edited.
 */
export function hashContent(content: string): string {
  return `cyrb53-${fingerprint(withoutLayout(content))}`;
}

/**
 * Whether `content` is what a manifest recorded. Manifests of earlier versions hold sha256
 * hashes, of the code without its layout or (0.1.0) of the text itself; they still match until
 * the next run rewrites them.
 */
export function hashMatches(recorded: string | undefined, content: string): boolean {
  if (recorded === undefined) return false;
  if (!recorded.startsWith('sha256-')) return recorded === hashContent(content);
  // Loaded only for such a manifest: see fingerprint.ts.
  const { createHash } = process.getBuiltinModule('node:crypto');
  const sha256 = (text: string) => `sha256-${createHash('sha256').update(text).digest('hex')}`;
  return (
    recorded === sha256(withoutLayout(content)) ||
    recorded === sha256(content.replace(/\r\n/g, '\n'))
  );
}

/** Deterministic text: same manifest, same bytes, so an identical re-run writes nothing. */
export function serializeManifest(manifest: Manifest): string {
  const files = Object.fromEntries(
    Object.keys(manifest.files)
      .sort()
      .map((path) => [path, manifest.files[path]]),
  );
  const targets = targetIds.filter((id) => manifest.targets.includes(id));
  // Written only when there are some: a project without an ORM keeps the manifest it had.
  const { orms, driver, ...rest } = manifest;
  const chosen = ormIds.filter((id) => orms?.includes(id));
  // The driver next to its database, and only when it is not the default (as orms).
  const { version, language, moduleFormat, database, ...others } = rest;
  const ordered = {
    version,
    language,
    moduleFormat,
    database,
    ...(driver !== undefined && { driver }),
    ...others,
    targets,
    ...(chosen.length > 0 && { orms: chosen }),
    files,
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

/**
 * A project-relative path that stays inside the project, lexically: not absolute, no `..` that
 * climbs out. Symlinks are checked where files are written (write.ts). Returns it normalised.
 */
export function normaliseProjectPath(path: string): string | undefined {
  if (path.includes('\0')) return undefined;
  const slashed = path.replace(/\\/g, '/');
  if (posix.isAbsolute(slashed) || /^[a-zA-Z]:/.test(slashed)) return undefined;
  const normal = posix.normalize(slashed).replace(/\/+$/, '');
  if (normal === '..' || normal.startsWith('../')) return undefined;
  return normal === '' ? '.' : normal;
}

/** True when version `a` is newer than `b` (x.y.z, a pre-release ranks below its release). */
export function isNewerVersion(a: string, b: string): boolean {
  const parse = (v: string) => {
    const [core = '', pre] = v.split('-', 2);
    return [...core.split('.').map((n) => Number.parseInt(n, 10) || 0), pre === undefined ? 1 : 0];
  };
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < 4; i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  }
  return false;
}

/** A field that must be a non-empty string. */
const text = (key: string) =>
  v.pipe(
    v.string(`"${key}" must be a non-empty string`),
    v.nonEmpty(`"${key}" must be a non-empty string`),
  );

/** A field that must be one of `valid`; the message names the bad value and the valid ones. */
const choice = <T extends string>(key: string, valid: readonly T[]) =>
  v.pipe(
    text(key),
    v.picklist(
      valid,
      (issue) => `"${key}" is '${issue.input}', expected ${oneOf(valid.map((x) => `'${x}'`))}`,
    ),
  );

/** A project-relative path, normalised; one that climbs out of the project is refused. */
const projectPath = (describe: (path: string) => string) =>
  v.pipe(
    v.string(),
    v.check(
      (path) => normaliseProjectPath(path) !== undefined,
      (issue) => describe(String(issue.input)),
    ),
    v.transform((path) => normaliseProjectPath(path)!),
  );

const manifestSchema = v.object({
  version: text('version'),
  language: choice('language', ['ts', 'js'] as const),
  moduleFormat: choice('moduleFormat', ['esm', 'cjs'] as const),
  database: choice('database', databaseIds),
  driver: v.optional(
    choice(
      'driver',
      databaseIds.flatMap((id) => driversOf(id).map((d) => d.id)),
    ),
  ),
  dir: v.pipe(
    text('dir'),
    projectPath((dir) => `"dir" '${dir}' is outside the project`),
  ),
  targets: v.pipe(
    v.array(
      v.picklist(
        targetIds,
        (issue) =>
          `unknown target '${String(issue.input)}' in "targets" (valid: ${targetIds.join(', ')})`,
      ),
      '"targets" must be an array of target ids',
    ),
    v.transform((ids) => [...new Set(ids)]),
  ),
  orms: v.optional(
    v.pipe(
      v.array(
        v.picklist(
          ormIds,
          (issue) => `unknown ORM '${String(issue.input)}' in "orms" (valid: ${ormIds.join(', ')})`,
        ),
        '"orms" must be an array of ORM ids',
      ),
      v.transform((ids) => [...new Set(ids)]),
    ),
    [],
  ),
  files: v.optional(
    v.pipe(
      v.record(v.string(), v.unknown(), '"files" must be an object of path → hash'),
      v.rawTransform(({ dataset, addIssue, NEVER }) => {
        const files: Record<string, string> = {};
        for (const [path, hash] of Object.entries(dataset.value)) {
          const normal = normaliseProjectPath(path);
          if (normal === undefined || normal === '.') {
            addIssue({ message: `file '${path}' is outside the project` });
            return NEVER;
          }
          if (
            typeof hash !== 'string' ||
            !/^(cyrb53-[0-9a-f]{14}|sha256-[0-9a-f]{64})$/.test(hash)
          ) {
            addIssue({ message: `the hash of '${path}' is not cyrb53-<14 hex digits>` });
            return NEVER;
          }
          files[normal] = hash;
        }
        return files;
      }),
    ),
    {},
  ),
});

/** Parses and checks db-hooks.json; any problem is a UsageError naming the field. */
export function parseManifest(text: string): Manifest {
  const fail = (what: string): never => {
    throw new UsageError(`${MANIFEST_FILE}: ${what}; fix it or delete the file to start over`);
  };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return fail(`not valid JSON (${(error as Error).message.split('\n')[0]})`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) fail('not a JSON object');
  const result = v.safeParse(manifestSchema, data, { abortEarly: true });
  return result.success ? result.output : fail(result.issues[0].message);
}
