// A real MariaDB for the MySQL tests.
//
// `MYSQL_URL` wins when set (a MySQL 8 or MariaDB server the tests may create databases on).
// Otherwise a throwaway server is made with Debian's mariadb-install-db and started with
// mariadbd --no-defaults on a free loopback port, in a folder of its own under os.tmpdir() (the
// run's folder under test/run.ts), and removed when stopped. No npm package ships a MySQL server
// that works offline, so without the binaries (.ci/run installs mariadb-server) the tests that
// need one are skipped, saying why. As root the server runs as the `mysql` user (or `nobody`).
// TEST_MYSQL_GENERAL_LOG=<file> logs every statement there.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mysql from 'mysql2/promise';
import { freePort } from './postgres.ts';

export interface RunningMariadb {
  url: string;
  /** Stops the server (a normal shutdown: every connection is closed), keeping its data. */
  shutdown(): Promise<void>;
  /** Starts it again on the same port after shutdown(). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** mariadbd and mariadb-install-db, from PATH or Debian's folders; undefined when absent. */
export function findMariadbBinaries(): { server: string; installDb: string } | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin'];
  const find = (names: string[]) => {
    for (const dir of dirs.filter(Boolean)) {
      for (const name of names) if (existsSync(join(dir, name))) return join(dir, name);
    }
    return undefined;
  };
  const server = find(['mariadbd', 'mysqld']);
  const installDb = find(['mariadb-install-db', 'mysql_install_db']);
  return server && installDb ? { server, installDb } : undefined;
}

/** Why no MySQL server can be had here, or undefined when one can: for `test(..., { skip })`. */
export const mysqlSkip: string | undefined =
  process.env.MYSQL_URL || findMariadbBinaries()
    ? undefined
    : 'no MySQL server: set MYSQL_URL, or install mariadb-server (.ci/run does)';

/** The user to run the server as when we are root (mariadbd refuses root without --user). */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['mysql', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }));
      const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }));
      return { uid, gid };
    } catch {
      // No such user.
    }
  }
  throw new Error('Running as root and no unprivileged user (mysql or nobody) to run MariaDB.');
}

/** Resolves once `url` accepts a connection; rejects if the server exits first. */
async function ready(url: string, server: ChildProcess, log: () => string): Promise<void> {
  let exited = false;
  server.once('exit', () => {
    exited = true;
  });
  // A deadline, so a server that never comes up fails the run instead of hanging it.
  for (let attempt = 0; attempt < 1200; attempt++) {
    if (exited) throw new Error(`mariadbd exited while starting:\n${log()}`);
    try {
      const conn = await mysql.createConnection({ uri: url, connectTimeout: 1000 });
      await conn.end();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  server.kill('SIGKILL');
  throw new Error(`mariadbd did not accept connections within a minute:\n${log()}`);
}

/** Starts a throwaway MariaDB on 127.0.0.1. */
export async function startMariadb(): Promise<RunningMariadb> {
  const binaries = findMariadbBinaries();
  if (!binaries) throw new Error(mysqlSkip);
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), 'cdh-mysql-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const errorLog = join(dir, 'server.log');
  try {
    execFileSync(
      binaries.installDb,
      [
        '--no-defaults',
        `--datadir=${data}`,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000, cwd: dir, ...user },
    );
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const port = await freePort();
  const url = `mysql://root@127.0.0.1:${port}/mysql`;
  const args = [
    '--no-defaults',
    `--datadir=${data}`,
    `--socket=${join(dir, 'mysqld.sock')}`,
    `--pid-file=${join(dir, 'mysqld.pid')}`,
    `--log-error=${errorLog}`,
    `--port=${port}`,
    '--bind-address=127.0.0.1',
    '--skip-name-resolve',
    '--character-set-server=utf8mb4',
    '--collation-server=utf8mb4_unicode_ci',
    '--max-connections=300',
    // A test server: durability traded for speed.
    '--innodb-flush-log-at-trx-commit=0',
    '--innodb-doublewrite=0',
    '--innodb-buffer-pool-size=64M',
    // Every statement with its connection id, for a look at what a test saw (slow).
    ...(process.env.TEST_MYSQL_GENERAL_LOG
      ? ['--general-log=1', `--general-log-file=${process.env.TEST_MYSQL_GENERAL_LOG}`]
      : []),
  ];
  let server: ChildProcess | undefined;
  const log = () => {
    try {
      return execFileSync('tail', ['-20', errorLog], { encoding: 'utf8' });
    } catch {
      return '(no log)';
    }
  };
  const start = async () => {
    server = spawn(binaries.server, args, { stdio: 'ignore', cwd: dir, ...user });
    await ready(url, server, log);
  };
  const shutdown = async () => {
    const running = server;
    server = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGTERM');
    await exited;
  };
  let stopped = false;
  // Stop it on exit even if the caller never gets to stop() (a failed test, an uncaught error).
  const onExit = () => {
    if (stopped) return;
    server?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  try {
    await start();
  } catch (error) {
    onExit();
    process.off('exit', onExit);
    throw error;
  }
  return {
    url,
    shutdown,
    restart: start,
    async stop() {
      if (stopped) return;
      stopped = true;
      process.off('exit', onExit);
      server?.kill('SIGKILL'); // its data goes with it
      await shutdown();
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    },
  };
}

let shared: Promise<RunningMariadb> | undefined;

/**
 * The server URL for this test process: MYSQL_URL, or a server started on first use and stopped
 * when the process exits. `npm test` starts one for the whole run (test/run.ts).
 */
export async function mysqlUrl(): Promise<string> {
  if (process.env.MYSQL_URL) return process.env.MYSQL_URL;
  shared ??= startMariadb();
  return (await shared).url;
}

/** Runs use() on a connection of its own, outside any pool: to look at the server from the side. */
export async function mysqlAdmin<T>(
  url: string,
  use: (conn: mysql.Connection) => Promise<T>,
): Promise<T> {
  const conn = await mysql.createConnection({ uri: url });
  try {
    return await use(conn);
  } finally {
    await conn.end();
  }
}

/** A fresh, empty database on the test server; dropped by the returned `drop()`. */
export async function createMysqlTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const serverUrl = await mysqlUrl();
  const name = `cdh_${randomBytes(6).toString('hex')}`;
  await mysqlAdmin(serverUrl, (conn) => conn.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      await mysqlAdmin(serverUrl, (conn) => conn.query(`DROP DATABASE IF EXISTS ${name}`));
    },
  };
}

let innodbReads: Promise<unknown> = Promise.resolve();
let lastInnodbRead = 0;

/**
 * The other sessions of the database at `url` with a transaction open (InnoDB's view). InnoDB
 * refreshes INNODB_TRX only when nobody read it for 100 ms, so the reads of this process (two
 * cases run at once) take turns 120 ms apart: read faster, the first answer would stick.
 */
export function openTransactions(url: string): Promise<unknown[]> {
  const read = innodbReads.then(async () => {
    await sleep(lastInnodbRead + 120 - Date.now());
    try {
      return await mysqlAdmin(url, async (conn) => {
        const [rows] = await conn.query(
          'SELECT p.ID, p.USER, p.COMMAND, p.TIME, p.INFO, t.trx_state, t.trx_started, t.trx_rows_modified FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id WHERE p.DB = DATABASE() AND p.ID <> CONNECTION_ID()',
        );
        return rows as unknown[];
      });
    } finally {
      lastInnodbRead = Date.now();
    }
  });
  innodbReads = read.catch(() => {});
  return read;
}

/** The other sessions connected to the database at `url`, per the server's PROCESSLIST. */
export function serverSessions(url: string): Promise<{ ID: number; COMMAND: string }[]> {
  return mysqlAdmin(url, async (conn) => {
    const [rows] = await conn.query(
      'SELECT ID, COMMAND FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID()',
    );
    return rows as { ID: number; COMMAND: string }[];
  });
}
