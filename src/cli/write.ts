// Effects on disk, after every check has passed. Each path must stay inside the project, also
// through symlinks; files are staged as temporary files next to their targets and renamed into
// place only once every one of them was written, so a failure leaves the project as it was.
import {
  accessSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { UsageError } from './errors.js';
import { normaliseProjectPath } from './manifest.js';

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** Paths assertWritable already passed in this run (key: root, path, directory or file). */
const checked = new Set<string>();

/**
 * Checks that `rel` can be written inside `root`: lexically inside, every existing part of it
 * resolves (symlinks followed) inside the project, every existing parent is a directory, the
 * file itself is not a directory, and the nearest existing folder is writable. `what` names
 * the path in the error (e.g. "--dir 'x'").
 */
export function assertWritable(
  root: string,
  rel: string,
  { directory = false, what = `'${rel}'` }: { directory?: boolean; what?: string } = {},
): string {
  const normal = normaliseProjectPath(rel);
  if (normal === undefined) throw new UsageError(`${what} is outside the project ${root}`);
  const target = join(root, normal);
  // A run checks each path before it asks or writes, and once more in writeFilesAtomically.
  const key = `${root}\0${normal}\0${directory}`;
  if (checked.has(key)) return target;
  const realRoot = existsSync(root) ? realpathSync(root) : root;
  // Walk down from the root: the first missing part ends what can be checked on disk.
  const parts = normal === '.' ? [] : normal.split('/');
  let path = root;
  let nearest = root;
  for (let i = 0; i < parts.length; i++) {
    path = join(path, parts[i]!);
    const info = lstatSync(path, { throwIfNoEntry: false });
    if (!info) break;
    if (info.isSymbolicLink()) {
      let real: string;
      try {
        real = realpathSync(path);
      } catch {
        throw new UsageError(`${what}: '${relative(root, path)}' is a broken symlink`);
      }
      if (!isInside(realRoot, real)) {
        throw new UsageError(
          `${what} is outside the project: '${relative(root, path)}' is a symlink to ${real}`,
        );
      }
    }
    const isLast = i === parts.length - 1;
    const isDir = info.isSymbolicLink() ? statSync(path).isDirectory() : info.isDirectory();
    if ((!isLast || directory) && !isDir) {
      throw new UsageError(
        `cannot write ${what}: '${relative(root, path)}' is a file, not a directory`,
      );
    }
    if (isLast && !directory && isDir) {
      throw new UsageError(`cannot write ${what}: it is a directory`);
    }
    nearest = isDir ? path : dirname(path);
  }
  if (existsSync(nearest)) {
    try {
      accessSync(nearest, constants.W_OK);
    } catch {
      throw new UsageError(`cannot write ${what}: '${nearest}' is not writable`);
    }
  }
  checked.add(key);
  return target;
}

/** Text of a project file, or undefined when there is none. */
export function readIfExists(root: string, rel: string): string | undefined {
  const path = join(root, rel);
  const info = statSync(path, { throwIfNoEntry: false });
  return info?.isFile() ? readFileSync(path, 'utf8') : undefined;
}

export interface FileToWrite {
  path: string;
  content: string;
}

/**
 * Writes every file atomically and all together: each is first written to a temporary file in
 * its own directory (so the rename never crosses a filesystem), then all are renamed into place.
 */
export function writeFilesAtomically(root: string, files: readonly FileToWrite[]): void {
  const staged: Array<{ temp: string; target: string }> = [];
  const createdDirs: string[] = [];
  try {
    for (const file of files) {
      const target = assertWritable(root, file.path);
      const dir = dirname(target);
      if (!existsSync(dir)) {
        const first = mkdirSync(dir, { recursive: true });
        if (first) createdDirs.push(first);
      }
      const unique = Math.random().toString(36).slice(2, 10);
      const temp = join(dir, `.${file.path.split('/').at(-1)}.${unique}.tmp`);
      writeFileSync(temp, file.content, { flag: 'wx' });
      staged.push({ temp, target });
    }
  } catch (error) {
    for (const { temp } of staged) rmSync(temp, { force: true });
    for (const dir of createdDirs.reverse()) rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  for (const { temp, target } of staged) renameSync(temp, target);
}
