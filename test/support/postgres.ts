// A real PostgreSQL for the tests.
//
// `DATABASE_URL` wins when set. Otherwise a throwaway cluster is made with the server's own
// initdb/pg_ctl (from PATH or Debian's /usr/lib/postgresql/<version>/bin), listening on a free
// loopback port, and removed when stopped. PostgreSQL refuses to run as root, so as root the
// cluster is owned by and started as the `postgres` user (or `nobody`).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface RunningPostgres {
  url: string;
  /** Stops the server (fast shutdown: every backend is terminated), keeping its data. */
  shutdown(): void;
  /** Starts it again on the same port after shutdown(). */
  restart(): void;
  stop(): Promise<void>;
}

function findBin(name: string): string {
  const onPath = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  if (onPath) return onPath;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const candidate = join(root, v, 'bin', name);
      if (existsSync(candidate)) return candidate;
    }
  }
  throw new Error(
    `Cannot find PostgreSQL's ${name}. Set DATABASE_URL to a server the tests may use, ` +
      'or install the server (Debian: apt-get install postgresql).',
  );
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
  execFileSync(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Starts a throwaway cluster on 127.0.0.1. */
export async function startPostgres(): Promise<RunningPostgres> {
  const initdb = findBin('initdb');
  const pgCtl = findBin('pg_ctl');
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), 'cdh-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  runAs(user, initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
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
  start();
  let stopped = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    shutdown: () => runAs(user, pgCtl, ['-D', data, '-m', 'fast', '-w', 'stop']),
    restart: start,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        runAs(user, pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } catch {
        // Already stopped by shutdown().
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
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
  shared ??= startPostgres().then((server) => {
    process.once('exit', () => {
      // Synchronous on purpose: 'exit' handlers cannot await.
      void server.stop();
    });
    return server;
  });
  return (await shared).url;
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
