// Adds the dependencies the plan says are missing, with the project's own package manager, in
// the foreground so its progress shows; then checks that the database driver really loads in
// the project. With --no-install the same commands are printed instead.
import type { PackageManager } from './detect.js';
import type { Dependency } from './targets.js';

export interface InstallCommand {
  command: PackageManager;
  args: string[];
}

const addVerb: Record<PackageManager, string> = {
  npm: 'install',
  pnpm: 'add',
  yarn: 'add',
  bun: 'add',
};
const devFlag: Record<PackageManager, string> = { npm: '-D', pnpm: '-D', yarn: '-D', bun: '--dev' };

/** `10.34.9` → [10, 34]; undefined stays undefined (the tool is not installed). */
function majorMinor(version: string | undefined): [number, number] | undefined {
  const match = /^(\d+)\.(\d+)/.exec(version ?? '');
  return match ? [Number(match[1]), Number(match[2])] : undefined;
}

/**
 * pnpm 10 and later run no dependency's build script unless the project allows it; without its
 * build, better-sqlite3 fails at the first query ("Could not locate the bindings file").
 * `pnpm add --allow-build=<name>` (10.4+) builds it and records the permission.
 */
export function pnpmBlocksBuilds(version: string | undefined): boolean {
  const v = majorMinor(version);
  return v === undefined || v[0] >= 10;
}

/**
 * The commands to run. A new app already lists everything in its package.json, so it needs a
 * plain install; an existing project gets `add` for what it lacks, dev dependencies apart.
 * `version` is the package manager's own (pnpm's decides how build scripts are allowed).
 */
export function installCommands(
  packageManager: PackageManager,
  dependencies: readonly Dependency[],
  devDependencies: readonly Dependency[],
  newApp: boolean,
  version?: string,
): InstallCommand[] {
  if (newApp) return [{ command: packageManager, args: ['install'] }];
  const spec = (dep: Dependency) => `${dep.name}@${dep.version}`;
  const commands: InstallCommand[] = [];
  if (dependencies.length > 0) {
    const builds = dependencies.filter((dep) => dep.installScript).map((dep) => dep.name);
    const allow =
      packageManager === 'pnpm' && builds.length > 0 && pnpmBlocksBuilds(version)
        ? [`--allow-build=${builds.join(',')}`]
        : [];
    commands.push({
      command: packageManager,
      args: [addVerb[packageManager], ...allow, ...dependencies.map(spec)],
    });
  }
  if (devDependencies.length > 0) {
    commands.push({
      command: packageManager,
      args: [addVerb[packageManager], devFlag[packageManager], ...devDependencies.map(spec)],
    });
  }
  return commands;
}

/** A command as a person would type it: arguments with shell characters are quoted. */
export function formatCommand({ command, args }: InstallCommand): string {
  const quote = (arg: string) => (/^[\w@./:=^~+,-]+$/.test(arg) ? arg : `'${arg}'`);
  return [command, ...args.map(quote)].join(' ');
}

/** The package manager's version, or undefined when it is not installed. */
export async function packageManagerVersion(
  packageManager: PackageManager,
  cwd: string,
): Promise<string | undefined> {
  const { spawnSync } = await import('node:child_process');
  const { existsSync } = await import('node:fs');
  const result = spawnSync(packageManager, ['--version'], {
    // A new app's folder may not exist yet.
    ...(existsSync(cwd) && { cwd }),
    encoding: 'utf8',
    shell: process.platform === 'win32',
    // Its own version, not the one a packageManager field would make corepack download.
    env: { ...process.env, COREPACK_ENABLE_STRICT: '0' },
    timeout: 30_000,
  });
  return result.status === 0 ? result.stdout.trim() || undefined : undefined;
}

/** How to get a package manager that is not installed: corepack ships with Node. */
export function howToGet(packageManager: PackageManager): string {
  if (packageManager === 'npm') return 'npm comes with Node.js: install Node.js from nodejs.org';
  if (packageManager === 'bun') return 'install it with `npm install -g bun` (or see bun.sh)';
  return `enable it with \`corepack enable ${packageManager}\` (corepack comes with Node.js; on Node 25+ first \`npm install -g corepack\`), or \`npm install -g ${packageManager}\``;
}

export type InstallResult = 'ok' | 'failed' | 'missing';

/**
 * What the install is about to do, before the package manager's own spinner takes over: each
 * command, and for a driver with a build script (better-sqlite3) that it may compile for minutes
 * (no prebuilt binary for this platform, or none reachable), so a quiet terminal is not taken for
 * a hang.
 */
export function installNotice(
  commands: readonly InstallCommand[],
  driver: Dependency | undefined,
): string {
  const lines = commands.map((command) => `  ${formatCommand(command)}\n`);
  if (driver?.installScript) {
    lines.push(
      `create-db-hooks: ${driver.name} is a native module: the install fetches a prebuilt binary for this platform, or else compiles it from source (a C++ compiler, make and Python), which can take a few minutes with no output.\n`,
    );
  }
  return lines.join('');
}

/**
 * Runs the commands in `cwd` with the terminal attached (its output on stderr, so stdout keeps
 * the report). `missing`: the package manager is not installed.
 */
export async function runInstall(
  cwd: string,
  commands: readonly InstallCommand[],
): Promise<InstallResult> {
  // Loaded here, not at the top: most runs never install, and startup time matters.
  const { spawn } = await import('node:child_process');
  for (const { command, args } of commands) {
    const result = await new Promise<InstallResult>((resolve) => {
      const child = spawn(command, args, {
        cwd,
        stdio: ['inherit', 2, 'inherit'],
        // npm and friends are .cmd shims on Windows, which only a shell can start.
        shell: process.platform === 'win32',
      });
      child.on('error', (error: NodeJS.ErrnoException) =>
        resolve(error.code === 'ENOENT' ? 'missing' : 'failed'),
      );
      child.on('exit', (code) => resolve(code === 0 ? 'ok' : 'failed'));
    });
    if (result !== 'ok') return result;
  }
  return 'ok';
}

/**
 * Loads the driver in the project, as the app will: undefined when it works, else the first line
 * of the error (e.g. "Could not locate the bindings file" when its build script did not run).
 */
export async function checkDriver(cwd: string, driver: string): Promise<string | undefined> {
  const { spawnSync } = await import('node:child_process');
  const { existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  // Yarn Plug'n'Play projects have no node_modules: resolve through its loader.
  const pnp = join(cwd, '.pnp.cjs');
  const probe =
    driver === 'better-sqlite3'
      ? "require('better-sqlite3')(':memory:').close()"
      : `require(${JSON.stringify(driver)})`;
  const result = spawnSync(
    process.execPath,
    [...(existsSync(pnp) ? ['--require', pnp] : []), '-e', probe],
    { cwd, encoding: 'utf8', timeout: 60_000 },
  );
  if (result.status === 0) return undefined;
  const line = result.stderr.split('\n').find((text) => /^\w*Error\b|^Error:/.test(text.trim()));
  return (line ?? result.stderr.trim().split('\n')[0] ?? 'it did not load').trim();
}

/** What to run when the driver's build script did not run (or failed), per package manager. */
export function driverFix(
  packageManager: PackageManager,
  version: string | undefined,
  driver: Dependency,
): string {
  const spec = `${driver.name}@${driver.version}`;
  switch (packageManager) {
    case 'pnpm':
      return pnpmBlocksBuilds(version)
        ? `pnpm add --allow-build=${driver.name} ${spec}`
        : `pnpm rebuild ${driver.name}`;
    case 'bun':
      return `bun pm trust ${driver.name}`;
    case 'npm':
      return `npm rebuild ${driver.name}`;
    case 'yarn':
      return `npm rebuild ${driver.name}`;
  }
}

export interface InstallOutcome {
  /** Commands still to run by hand (the install failed, or could not start). */
  pending: readonly InstallCommand[];
  /** Commands that make the installed driver load. */
  fixes: string[];
  failed: boolean;
}

/**
 * Installs, then checks that `driver` loads in the project: "installed" is not "works" (pnpm 10
 * skips better-sqlite3's build script and says so only in a box; the app then fails at its first
 * query). Every problem is one line on stderr saying what to run.
 */
export async function installAndCheck(input: {
  root: string;
  packageManager: PackageManager;
  version: string | undefined;
  commands: readonly InstallCommand[];
  driver: Dependency | undefined;
  stderr: (text: string) => void;
}): Promise<InstallOutcome> {
  const { root, packageManager: pm, commands, driver, stderr } = input;
  stderr(installNotice(commands, driver));
  const result = await runInstall(root, commands);
  if (result === 'missing') {
    stderr(
      `create-db-hooks: ${pm} is not installed, and this project uses it: ${howToGet(pm)}; then run the commands under Next steps.\n`,
    );
    return { pending: commands, fixes: [], failed: true };
  }
  if (result === 'failed') {
    stderr('create-db-hooks: installing dependencies failed; run the command below yourself.\n');
    return { pending: commands, fixes: [], failed: true };
  }
  const problem = driver && (await checkDriver(root, driver.name));
  if (!driver || !problem) return { pending: [], fixes: [], failed: false };
  const fix = driverFix(pm, input.version, driver);
  stderr(
    `create-db-hooks: ${driver.name} was installed but does not load (${problem}); its build script did not run or failed: run \`${fix}\` in ${root}\n`,
  );
  return { pending: [], fixes: [fix], failed: true };
}
