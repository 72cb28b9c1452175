// Real installs with every package manager: npm, pnpm, yarn and bun add better-sqlite3 to an
// existing project (and pnpm makes a new app), and the driver must load in the project
// afterwards. pnpm 10 skips dependencies' build scripts unless told, which once left apps that
// "installed fine" and failed at their first query. pnpm, yarn and bun come from npm when they
// are not on PATH; a package manager that cannot be had is skipped with the reason.
// Slow: better-sqlite3 compiles from source in each project (about a minute each).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { cleanEnv, makeProject, readJson, runCli, tempDir } from './helpers.ts';

const onPath = (command: string, env: NodeJS.ProcessEnv = cleanEnv) =>
  spawnSync(command, ['--version'], { env, encoding: 'utf8' }).status === 0;

/** pnpm 10, yarn 1 and bun from npm into a temp prefix, for those not on PATH. */
const tools = (() => {
  const wanted = { pnpm: 'pnpm@10', yarn: 'yarn@1', bun: 'bun@1' };
  const missing = Object.entries(wanted).filter(([name]) => !onPath(name));
  const prefix = tempDir('cdh-pms-');
  // bun builds native modules with `bunx node-gyp@latest` unless node-gyp is on PATH, and the
  // latest node-gyp no longer runs on Node 20: give it npm's own copy, as npm does for itself.
  const npmGyp = join(
    dirname(
      realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim()),
    ),
    'node-gyp-bin',
  );
  // Offline machines point node-gyp at local headers in npm's config (nodedir); npm passes it
  // to build scripts, bun does not read it: hand it over.
  const nodedir = spawnSync('npm', ['config', 'get', 'nodedir'], {
    env: cleanEnv,
    encoding: 'utf8',
  }).stdout.trim();
  const env = {
    ...cleanEnv,
    ...(nodedir && nodedir !== 'undefined' && { npm_config_nodedir: nodedir }),
    PATH: [
      join(prefix, 'node_modules', '.bin'),
      ...(existsSync(npmGyp) ? [npmGyp] : []),
      cleanEnv.PATH,
    ].join(delimiter),
  };
  const reasons: Record<string, string> = {};
  // One install per tool: one that cannot be had (a registry hiccup, a platform bun lacks)
  // skips its own tests only, with the reason.
  for (const [name, spec] of missing) {
    try {
      execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefix', prefix, spec], {
        env: cleanEnv,
        stdio: 'ignore',
        timeout: 300_000,
      });
    } catch (error) {
      reasons[name] = `npm install ${spec} failed: ${(error as Error).message.split('\n')[0]}`;
    }
  }
  for (const name of Object.keys(wanted)) {
    if (!reasons[name] && !onPath(name, env)) reasons[name] = `${name} does not run here`;
  }
  return { env, reasons };
})();

function version(command: string): string {
  return execFileSync(command, ['--version'], { env: tools.env, encoding: 'utf8' }).trim();
}

/** The driver, loaded in the project as the app loads it. */
function driverLoads(root: string): string {
  const result = spawnSync(
    process.execPath,
    [
      '-e',
      "require('better-sqlite3')(':memory:').prepare('select 1 as x').get().x === 1 || process.exit(1)",
    ],
    { cwd: root, encoding: 'utf8' },
  );
  return result.status === 0
    ? 'loads'
    : (result.stderr.split('\n').find((l) => /Error/.test(l)) ?? 'fails');
}

describe('real package managers: better-sqlite3 loads after the install', {
  concurrency: 2,
}, () => {
  for (const pm of ['npm', 'pnpm', 'yarn', 'bun'] as const) {
    test(`${pm}: an existing project`, { skip: tools.reasons[pm], timeout: 900_000 }, async () => {
      const root = makeProject({}, { name: `with-${pm}`, version: '1.0.0', type: 'module' });
      const agent = `${pm}/${version(pm)} npm/? node/${process.version}`;
      const result = await runCli(['-C', root, 'hooks', '-d', 'sqlite', '-y'], {
        env: { ...tools.env, npm_config_user_agent: agent },
        timeoutMs: 900_000,
      });
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
      // Before the package manager's quiet minutes: what it installs, and why it may take long.
      const verb = pm === 'npm' ? 'install' : 'add';
      const said = result.stderr.indexOf(`${pm} ${verb} `);
      assert.ok(said >= 0, `the command is not shown:\n${result.stderr}`);
      assert.match(result.stderr.slice(said).split('\n')[0]!, /better-sqlite3@\^12/);
      assert.match(result.stderr, /better-sqlite3 is a native module.*can take a few minutes/);
      assert.ok(readJson(join(root, 'package.json')).dependencies['better-sqlite3']);
      assert.equal(driverLoads(root), 'loads');
    });
  }

  test('pnpm: a new app', { skip: tools.reasons.pnpm, timeout: 900_000 }, async () => {
    const root = join(tempDir(), 'app');
    const agent = `pnpm/${version('pnpm')} npm/? node/${process.version}`;
    const result = await runCli(['-C', root, 'node-http', '-d', 'sqlite', '--lang', 'js', '-y'], {
      env: { ...tools.env, npm_config_user_agent: agent },
      timeoutMs: 900_000,
    });
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stderr, /^ {2}pnpm install$/m);
    assert.match(result.stderr, /better-sqlite3 is a native module.*can take a few minutes/);
    assert.ok(existsSync(join(root, 'node_modules')));
    assert.equal(driverLoads(root), 'loads');
  });
});
