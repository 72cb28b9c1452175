// Adds the dependencies the plan says are missing, with the project's own package manager, in
// the foreground so its progress shows. With --no-install the same commands are printed instead.
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

/**
 * The commands to run. A new app already lists everything in its package.json, so it needs a
 * plain install; an existing project gets `add` for what it lacks, dev dependencies apart.
 */
export function installCommands(
  packageManager: PackageManager,
  dependencies: readonly Dependency[],
  devDependencies: readonly Dependency[],
  newApp: boolean,
): InstallCommand[] {
  if (newApp) return [{ command: packageManager, args: ['install'] }];
  const spec = (dep: Dependency) => `${dep.name}@${dep.version}`;
  const commands: InstallCommand[] = [];
  if (dependencies.length > 0) {
    commands.push({
      command: packageManager,
      args: [addVerb[packageManager], ...dependencies.map(spec)],
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
  const quote = (arg: string) => (/^[\w@./:=^~+-]+$/.test(arg) ? arg : `'${arg}'`);
  return [command, ...args.map(quote)].join(' ');
}

/** Runs the commands in `cwd` with the terminal attached; resolves false when one fails. */
export async function runInstall(
  cwd: string,
  commands: readonly InstallCommand[],
): Promise<boolean> {
  // Loaded here, not at the top: most runs never install, and startup time matters.
  const { spawn } = await import('node:child_process');
  for (const { command, args } of commands) {
    const ok = await new Promise<boolean>((resolve) => {
      const child = spawn(command, args, {
        cwd,
        stdio: 'inherit',
        // npm and friends are .cmd shims on Windows, which only a shell can start.
        shell: process.platform === 'win32',
      });
      child.on('error', () => resolve(false));
      child.on('exit', (code) => resolve(code === 0));
    });
    if (!ok) return false;
  }
  return true;
}
