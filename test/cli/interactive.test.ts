// The prompts in a real pseudo-terminal: tmux runs the built bin, the test reads the screen and
// types. The exit code is written to a file by the shell that ran it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { targets } from '../../src/cli/targets.ts';
import { binPath, contents, makeProject, readJson, tempDir } from './helpers.ts';

const socket = `cdh-test-${process.pid}`;
// A pane stays readable after its program exits, so a screen printed just before the exit is
// not lost between two polls.
const config = join(tempDir('cdh-tmux-conf-'), 'tmux.conf');
writeFileSync(config, 'set-option -g remain-on-exit on\n');
const tmux = (...args: string[]) =>
  execFileSync('tmux', ['-L', socket, '-f', config, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
const hasTmux = (() => {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

after(() => {
  try {
    tmux('kill-server');
  } catch {
    // No server left: every session ended by itself.
  }
});

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Starts the CLI in a fresh tmux session; returns helpers to read the screen and type. */
function start(
  name: string,
  args: string[],
  { stdoutTo, path, width = 120 }: { stdoutTo?: string; path?: string; width?: number } = {},
) {
  const codeFile = join(tempDir('cdh-tmux-'), 'code');
  const redirect = stdoutTo ? ` > ${quote(stdoutTo)}` : '';
  const env = path ? `PATH=${quote(path)} ` : '';
  const command = `${env}${[process.execPath, binPath(), ...args].map(quote).join(' ')}${redirect}; echo $? > ${quote(codeFile)}`;
  tmux('new-session', '-d', '-s', name, '-x', String(width), '-y', '40', `sh -c ${quote(command)}`);
  const screen = () => {
    try {
      return tmux('capture-pane', '-p', '-t', name);
    } catch {
      return '';
    }
  };
  return {
    screen,
    async waitFor(text: string | RegExp, timeoutMs = 15_000): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const now = screen();
        if (typeof text === 'string' ? now.includes(text) : text.test(now)) return now;
        await sleep(50);
      }
      throw new Error(`timed out waiting for ${text}; screen:\n${screen()}`);
    },
    keys(...keys: string[]) {
      tmux('send-keys', '-t', name, ...keys);
    },
    async exitCode(timeoutMs = 15_000): Promise<number> {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (existsSync(codeFile)) {
          const text = readFileSync(codeFile, 'utf8').trim();
          if (text !== '') return Number(text);
        }
        await sleep(50);
      }
      throw new Error(`no exit within ${timeoutMs} ms; screen:\n${screen()}`);
    },
  };
}

describe('interactive prompts in a terminal', { skip: !hasTmux && 'tmux is not installed' }, () => {
  test('choose targets and database, confirm, files written', async () => {
    const root = makeProject(
      { 'tsconfig.json': '{}' },
      { name: 'x', type: 'module', dependencies: { express: '^5.1.0' } },
    );
    const cli = start('choose', ['-C', root, '--no-install']);
    const first = await cli.waitFor('Which frameworks should get database hooks?');
    // express is detected, so it is already checked.
    assert.match(first, /◉ express/);
    cli.keys('Down', 'Down', 'Space'); // koa
    await cli.waitFor(/◉ koa/);
    cli.keys('Enter');
    await cli.waitFor('Which database?');
    cli.keys('Down', 'Enter'); // postgres
    const orms = await cli.waitFor("Bind a query builder or ORM to the request's connection?");
    assert.match(orms, /❯ none/);
    cli.keys('Down', 'Enter'); // kysely
    const confirm = await cli.waitFor(/Write \d+ files\?/);
    assert.match(confirm, /create {2}src\/db\/koa\.ts|create {2}db\/koa\.ts/);
    cli.keys('Enter');
    assert.equal(await cli.exitCode(), 0);
    const manifest = readJson(join(root, 'db-hooks.json'));
    assert.deepEqual(manifest.targets, ['express', 'koa']);
    assert.equal(manifest.database, 'postgres');
    assert.deepEqual(manifest.orms, ['kysely']);
    for (const file of ['express.ts', 'koa.ts', 'index.ts', 'runtime-postgres.ts', 'kysely.ts']) {
      assert.ok(existsSync(join(root, 'db', file)), file);
    }
  });

  test('flags skip their questions; no to the confirmation writes nothing and exits 0', async () => {
    const root = makeProject({}, { name: 'x' });
    const before = contents(root);
    const cli = start('decline', ['-C', root, 'hooks', '-d', 'sqlite', '--no-install']);
    const screen = await cli.waitFor(/Write \d+ files/);
    assert.doesNotMatch(screen, /Which frameworks|Which database|Bind a query builder/);
    // The count is the plan's: every file listed above the question (db-hooks.json too).
    const planned = screen.match(/^ {2}create {2}\S+/gm) ?? [];
    assert.ok(
      planned.some((line) => line.endsWith('db/hooks.js')),
      screen,
    );
    assert.match(screen, new RegExp(`Write ${planned.length} files`), screen);
    cli.keys('n', 'Enter');
    assert.equal(await cli.exitCode(), 0);
    assert.deepEqual(contents(root), before);
  });

  test('a database change asks first; no keeps the old database, on its driver', async () => {
    const root = makeProject({}, { name: 'x' });
    const setup = start('setup', [
      '-C',
      root,
      '-f',
      'express',
      '--driver',
      'node:sqlite',
      '--yes',
      '--no-install',
    ]);
    assert.equal(await setup.exitCode(), 0);
    const index = readFileSync(join(root, 'db/index.js'), 'utf8');
    const cli = start('switch', ['-C', root, '-f', 'express', '-d', 'postgres', '--no-install']);
    await cli.waitFor('Switch the database from sqlite to postgres?');
    cli.keys('Enter'); // default: no
    assert.equal(await cli.exitCode(), 0);
    assert.equal(readFileSync(join(root, 'db/index.js'), 'utf8'), index);
    assert.equal(readJson(join(root, 'db-hooks.json')).database, 'sqlite');
    assert.equal(readJson(join(root, 'db-hooks.json')).driver, 'node:sqlite');
  });

  test('a folder with files and no package.json: asks, and no writes nothing', async () => {
    const home = tempDir('cdh-home-');
    writeFileSync(join(home, 'notes.txt'), 'mine\n');
    const cli = start('not-a-project', ['-C', home, 'express', '--no-install']);
    await cli.waitFor(/has files but no package\.json\. Make a new app here anyway\? \(y\/N\)/);
    cli.keys('Enter');
    assert.equal(await cli.exitCode(), 0);
    assert.deepEqual(contents(home), { 'notes.txt': 'mine\n' });

    const yes = start('not-a-project-yes', [
      '-C',
      home,
      'express',
      '-d',
      'sqlite',
      '--lang',
      'js',
      '--no-install',
    ]);
    await yes.waitFor('Make a new app here anyway?');
    yes.keys('y', 'Enter');
    await yes.waitFor(/Write \d+ files/);
    yes.keys('Enter');
    assert.equal(await yes.exitCode(), 0);
    assert.ok(existsSync(join(home, 'package.json')));
  });

  test('stdout redirected: the questions still show on the terminal, stdout has the plan', async () => {
    const root = makeProject(
      { 'tsconfig.json': '{}', 'src/main.ts': '' },
      { name: 'x', type: 'module', dependencies: { express: '^5.1.0' } },
    );
    const plan = join(tempDir('cdh-out-'), 'plan.txt');
    const cli = start('redirected', ['-C', root, '--dry-run'], { stdoutTo: plan });
    // What it found, one line, before the first question.
    const first = await cli.waitFor('Which frameworks should get database hooks?');
    assert.match(first, /Express 5 · TypeScript \(ESM\) · npm · src\/db/);
    cli.keys('Enter');
    await cli.waitFor('Which database?');
    cli.keys('Enter');
    await cli.waitFor('Which SQLite driver?');
    cli.keys('Enter'); // better-sqlite3
    await cli.waitFor('Bind a query builder or ORM');
    cli.keys('Enter'); // none
    assert.equal(await cli.exitCode(), 0);
    const text = readFileSync(plan, 'utf8');
    assert.match(text, /^Dry run: nothing is written/);
    assert.match(text, /create {2}src\/db\/express\.ts/);
    // Neither the questions nor the found-line (the diff below may say anything).
    assert.doesNotMatch(text, /\? Which (frameworks|database)|Bind a query builder|Express 5 · /);
    assert.ok(!text.includes('\u001b'), 'no terminal escapes in the plan');
  });

  test('sqlite picked at the database question: the driver is asked, and kept for the next run', async () => {
    const root = makeProject({}, { name: 'x', dependencies: { express: '^5' } });
    const cli = start('driver', ['-C', root, '-f', 'express', '--no-install']);
    await cli.waitFor('Which database?');
    cli.keys('Enter'); // sqlite
    const screen = await cli.waitFor('Which SQLite driver?');
    assert.match(screen, /❯ better-sqlite3 /);
    assert.match(screen, /node:sqlite +built into Node\.js: nothing to install/);
    cli.keys('Down', 'Enter');
    await cli.waitFor(/Write \d+ files\?/);
    cli.keys('Enter');
    assert.equal(await cli.exitCode(), 0);
    assert.equal(readJson(join(root, 'db-hooks.json')).driver, 'node:sqlite');
    assert.ok(existsSync(join(root, 'db/runtime-node-sqlite.js')));

    // The manifest answers both next time: neither the database nor the driver is asked.
    const again = start('driver-again', ['-C', root, '-f', 'express', '--no-install']);
    const next = await again.waitFor(/Already up to date|Unchanged|Write \d+ files?\?/);
    assert.doesNotMatch(next, /Which database|Which SQLite driver/);
    if (/Write \d+ files?\?/.test(next)) again.keys('Enter');
    assert.equal(await again.exitCode(), 0);
    assert.equal(readJson(join(root, 'db-hooks.json')).driver, 'node:sqlite');
  });

  test('a new app asks TypeScript or JavaScript', async () => {
    const root = join(tempDir(), 'fresh');
    const cli = start('language', ['-C', root, 'express', '-d', 'sqlite', '--no-install']);
    const screen = await cli.waitFor('TypeScript or JavaScript?');
    assert.match(screen, /new app in fresh\/ · npm · src\/db/);
    cli.keys('Down', 'Enter'); // JavaScript
    await cli.waitFor(/Write \d+ files/);
    cli.keys('Enter');
    assert.equal(await cli.exitCode(), 0);
    assert.ok(existsSync(join(root, 'src/app.js')));
    assert.ok(!existsSync(join(root, 'tsconfig.json')));
  });

  test('a target added earlier is shown locked, with a note, and stays', async () => {
    const root = makeProject({}, { name: 'x', dependencies: { express: '^4.21.0' } });
    const setup = start('locked-setup', ['-C', root, 'express', '--yes', '--no-install']);
    assert.equal(await setup.exitCode(), 0);
    const cli = start('locked', ['-C', root, '--no-install']);
    const screen = await cli.waitFor('Which frameworks should get database hooks?');
    assert.match(
      screen,
      /Express 4 · JavaScript \(CommonJS\) · npm · db · set up earlier: express on sqlite/,
    );
    assert.match(
      screen,
      /◉ express .*\(added earlier; stays: delete its file by hand to drop it\)/,
    );
    // The cursor skips the locked row: Space ticks the next one (fastify), not express.
    cli.keys('Space');
    await cli.waitFor(/◉ fastify/);
    cli.keys('Space', 'Enter');
    // db-hooks.json answers the database: not asked again.
    const orms = await cli.waitFor('Bind a query builder or ORM');
    assert.doesNotMatch(orms, /Which database/);
    cli.keys('Enter'); // none
    await cli.waitFor(/Already up to date|Unchanged/);
    assert.equal(await cli.exitCode(), 0);
    assert.deepEqual(readJson(join(root, 'db-hooks.json')).targets, ['express']);
  });

  test('a narrow terminal: every framework shows at once, the long locked rows wrapped', async () => {
    const root = makeProject({}, { name: 'x', dependencies: { express: '^5.1.0' } });
    const setup = start('narrow-setup', ['-C', root, 'express', 'koa', '--yes', '--no-install']);
    assert.equal(await setup.exitCode(), 0);
    const cli = start('narrow', ['-C', root, '--no-install'], { width: 60 });
    const screen = await cli.waitFor('Which frameworks should get database hooks?');
    for (const target of targets) {
      assert.match(screen, new RegExp(`[◯◉] ${target.id} `), `${target.id} not shown:\n${screen}`);
    }
    // Down past the end does not scroll the first ones away.
    cli.keys('Down', 'Down', 'Down', 'Down', 'Down', 'Down', 'Down', 'Down');
    await sleep(200);
    assert.match(cli.screen(), /◉ express /);
    cli.keys('C-c');
    assert.equal(await cli.exitCode(), 130);
  });

  test('a framework the project lacks: asks to install it; no → Next steps say what to run', async () => {
    const root = makeProject(
      { 'tsconfig.json': '{}', 'src/app.ts': '' },
      {
        name: 'x',
        type: 'module',
        dependencies: { express: '^5.1.0', 'better-sqlite3': '^12' },
        devDependencies: { '@types/better-sqlite3': '^7', '@types/node': '^22' },
      },
    );
    const bin = tempDir('cdh-bin-');
    const log = join(bin, 'calls.log');
    writeFileSync(join(bin, 'npm'), `#!/bin/sh\necho "npm $*" >> '${log}'\n`, { mode: 0o755 });
    const report = join(tempDir('cdh-out-'), 'report.txt');
    const cli = start('framework', ['-C', root, 'koa', '-d', 'sqlite'], {
      path: `${bin}:${process.env.PATH}`,
      stdoutTo: report,
    });
    await cli.waitFor('Koa is not in package.json: install koa, @types/koa? (Y/n)');
    cli.keys('n', 'Enter');
    await cli.waitFor(/Write \d+ files\?/);
    cli.keys('Enter');
    assert.equal(await cli.exitCode(), 0);
    assert.match(
      readFileSync(report, 'utf8'),
      /Koa is not installed: src\/db\/koa\.ts cannot load and tsc fails until you run\n +npm install koa@\^3\.0\.0\n +npm install -D @types\/koa@\^2\.15\.0\n/,
    );
    assert.ok(!existsSync(log), 'nothing installed');
  });

  test('edited files: one question per file; yes replaces that one, no keeps the other', async () => {
    const root = makeProject({}, { name: 'x', dependencies: { express: '^5', koa: '^3' } });
    const setup = start('per-file-setup', ['-C', root, 'express', 'koa', '--yes', '--no-install']);
    assert.equal(await setup.exitCode(), 0);
    const express = join(root, 'db/express.js');
    const koa = join(root, 'db/koa.js');
    const generated = readFileSync(express, 'utf8');
    writeFileSync(express, `${generated}// edit one\n`);
    writeFileSync(koa, `${readFileSync(koa, 'utf8')}// edit two\n`);
    const cli = start('per-file', ['-C', root, '-d', 'sqlite', '--no-install']);
    await cli.waitFor('Which frameworks should get database hooks?');
    cli.keys('Enter');
    await cli.waitFor('Bind a query builder or ORM');
    cli.keys('Enter'); // none
    await cli.waitFor('db/express.js was edited since it was generated. Replace it');
    cli.keys('y', 'Enter');
    await cli.waitFor('db/koa.js was edited since it was generated. Replace it');
    cli.keys('Enter'); // default: no
    await cli.waitFor(/Write 1 file\?/); // express.js; the manifest already has its hash
    cli.keys('Enter');
    assert.equal(await cli.exitCode(), 0);
    assert.equal(readFileSync(express, 'utf8'), generated);
    assert.match(readFileSync(koa, 'utf8'), /\/\/ edit two\n$/);
  });

  for (const [where, args, prompt] of [
    ['the framework question', [], 'Which frameworks'],
    ['the database question', ['-f', 'express'], 'Which database?'],
    ['the confirmation', ['-f', 'express', '-d', 'sqlite'], 'Write '],
  ] as const) {
    test(`Ctrl-C at ${where}: exit 130, nothing written`, async () => {
      const root = makeProject({}, { name: 'x' });
      const before = contents(root);
      const cli = start(`cancel-${args.length}`, ['-C', root, '--no-install', ...args]);
      await cli.waitFor(prompt);
      cli.keys('C-c');
      assert.equal(await cli.exitCode(), 130);
      assert.deepEqual(contents(root), before);
    });
  }

  /** A project the CLI already wrote Express + SQLite into, with --yes. */
  async function generated(name: string, extra: string[] = []): Promise<string> {
    const root = makeProject({}, { name: 'x', dependencies: { express: '^5' } });
    const setup = start(name, ['-C', root, 'express', ...extra, '--yes', '--no-install']);
    assert.equal(await setup.exitCode(), 0);
    return root;
  }

  // The other questions, each in the situation that asks it.
  const fakeNpm = () => {
    const bin = tempDir('cdh-bin-');
    writeFileSync(join(bin, 'npm'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    return `${bin}:${process.env.PATH}`;
  };
  for (const [where, situation, prompt] of [
    [
      'the ORM question',
      async () => ({
        root: await generated('cancel-orm-setup', ['-d', 'sqlite']),
        args: ['-d', 'sqlite'],
        answer: ['Which frameworks should get database hooks?', 'Enter'] as const,
      }),
      'Bind a query builder or ORM',
    ],
    [
      'the SQLite driver question',
      async () => ({
        root: makeProject({}, { name: 'x' }),
        args: ['-f', 'express'],
        answer: ['Which database?', 'Enter'] as const,
      }),
      'Which SQLite driver?',
    ],
    [
      'the TypeScript or JavaScript question',
      async () => ({ root: join(tempDir(), 'fresh'), args: ['express', '-d', 'sqlite'] }),
      'TypeScript or JavaScript?',
    ],
    [
      'the new-app-here question',
      async () => {
        const root = tempDir('cdh-home-');
        writeFileSync(join(root, 'notes.txt'), 'mine\n');
        return { root, args: ['express'] };
      },
      'Make a new app here anyway?',
    ],
    [
      'the database switch',
      async () => ({
        root: await generated('cancel-switch-setup', ['-d', 'sqlite']),
        args: ['-f', 'express', '-d', 'postgres'],
      }),
      'Switch the database from sqlite to postgres?',
    ],
    [
      'the framework install question',
      async () => ({
        root: makeProject({ 'src/app.js': '' }, { name: 'x', dependencies: { express: '^5' } }),
        args: ['koa', '-d', 'sqlite'],
        path: fakeNpm(),
      }),
      'Koa is not in package.json',
    ],
    [
      'an edited file',
      async () => {
        const root = await generated('cancel-edited-setup', ['-d', 'sqlite']);
        const file = join(root, 'db/express.js');
        writeFileSync(file, `${readFileSync(file, 'utf8')}// edited\n`);
        return { root, args: ['-f', 'express', '-d', 'sqlite'] };
      },
      'db/express.js was edited since it was generated',
    ],
  ] as const) {
    test(`Ctrl-C at ${where}: exit 130, nothing written`, async () => {
      const { root, args, path, answer } = (await situation()) as {
        root: string;
        args: readonly string[];
        path?: string;
        /** A question before the one under test, and the key that answers it. */
        answer?: readonly [string, string];
      };
      const before = existsSync(root) ? contents(root) : undefined;
      const name = `cancel-${where.replace(/\W+/g, '-')}`;
      const cli = start(name, ['-C', root, ...(path ? [] : ['--no-install']), ...args], { path });
      if (answer) {
        await cli.waitFor(answer[0]);
        cli.keys(answer[1]);
      }
      await cli.waitFor(prompt);
      cli.keys('C-c');
      assert.equal(await cli.exitCode(), 130);
      if (before) assert.deepEqual(contents(root), before);
      else assert.ok(!existsSync(root), 'the new app was written');
    });
  }
});
