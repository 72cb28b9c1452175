// Shared by the CLI tests: a copy of the built package as npm would ship it, temp project
// directories, and a runner for the built bin.
import { spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const cleanup: string[] = [];
process.on('exit', () => {
  for (const dir of cleanup) rmSync(dir, { recursive: true, force: true });
});

/**
 * The environment for the package managers and CLI runs the tests start: without npm's own
 * variables from `npm test` (prefix, user agent…), except the headers of the Node.js line under
 * test (npm_config_nodedir, from test/run.ts), which native modules must be built against to
 * load on this line.
 */
export const cleanEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([key]) => !/^npm_/i.test(key) || key.toLowerCase() === 'npm_config_nodedir',
  ),
) as NodeJS.ProcessEnv;

/** A fresh temp directory, removed when the test process exits. */
export function tempDir(prefix = 'cdh-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanup.push(dir);
  return dir;
}

let packageCopy: string | undefined;

/** The built package as npm would ship it (bin, dist, package.json, templates, src/runtime), in a temp dir. */
export function builtPackage(): string {
  if (packageCopy) return packageCopy;
  if (!existsSync(join(repoRoot, 'dist', 'cli.cjs'))) {
    throw new Error('dist/cli.cjs is missing: run `npm run build` first (npm test does).');
  }
  const root = tempDir('cdh-pkg-');
  for (const part of ['bin', 'dist', 'package.json', 'templates', 'src/runtime']) {
    cpSync(join(repoRoot, part), join(root, part), { recursive: true });
  }
  packageCopy = root;
  return root;
}

export function binPath(): string {
  return join(builtPackage(), 'bin', 'create-db-hooks.cjs');
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the built bin with stdin closed (no TTY), unless told otherwise. */
export function runCli(
  args: readonly string[],
  options: {
    cwd?: string;
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number;
    keepStdinOpen?: boolean;
  } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPath(), ...args], {
      cwd: options.cwd ?? tmpdir(),
      env: { ...process.env, npm_config_user_agent: '', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group, so a timeout also ends whatever it started (an install).
      detached: true,
    });
    if (!options.keepStdinOpen) child.stdin.end();
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
      reject(
        new Error(`create-db-hooks ${args.join(' ')} did not exit in time\n${stdout}\n${stderr}`),
      );
    }, options.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Writes files (path → text or object as JSON) under `root`. */
export function writeTree(root: string, files: Record<string, string | object>): void {
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(
      full,
      typeof content === 'string' ? content : `${JSON.stringify(content, null, 2)}\n`,
    );
  }
}

/** A project: package.json (with the given extra fields) plus other files. */
export function makeProject(
  files: Record<string, string | object> = {},
  packageJson: object = { name: 'demo', version: '1.0.0' },
): string {
  const root = tempDir('cdh-project-');
  writeTree(root, { 'package.json': packageJson, ...files });
  return root;
}

/** Every file under `root`: relative path → content and mtime, for before/after comparisons. */
export function snapshot(root: string): Map<string, { content: string; mtimeMs: number }> {
  const out = new Map<string, { content: string; mtimeMs: number }>();
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const info = statSync(path);
      if (info.isDirectory()) {
        out.set(`${relative(root, path)}/`, { content: '', mtimeMs: info.mtimeMs });
        walk(path);
      } else {
        out.set(relative(root, path), {
          content: readFileSync(path, 'utf8'),
          mtimeMs: info.mtimeMs,
        });
      }
    }
  };
  walk(root);
  return out;
}

/** Only the listing and contents, for "nothing written" (directories' mtimes change on reads). */
export function contents(root: string): Record<string, string> {
  return Object.fromEntries([...snapshot(root)].map(([path, { content }]) => [path, content]));
}

export function readJson(path: string): any {
  return JSON.parse(readFileSync(path, 'utf8'));
}
