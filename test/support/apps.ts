// The generated adapters running in real servers, for the load tests and the HTTP benchmarks:
// generate the adapters into a folder the servers (test/support/servers) import, prepare the
// sample tables, start a server process and wait until it listens, stop it for sure.
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { renderGeneratedFiles } from '../../src/cli/render.ts';
import { type DatabaseId, targetIds } from '../../src/cli/targets.ts';
import { freePort } from './postgres.ts';

export const serversDir = join(dirname(fileURLToPath(import.meta.url)), 'servers');
/** Generated files and SQLite databases: git-ignored, inside the repository. */
export const appsDir = fileURLToPath(new URL('../../.tmp/apps/', import.meta.url));

export type Framework =
  | 'express'
  | 'fastify'
  | 'koa'
  | 'hono'
  | 'node-http'
  | 'fetch'
  | 'hooks'
  | 'nestjs';
export type Mode = 'generated' | 'baseline' | 'pool-query' | 'fastify-postgres';

/**
 * Renders every target for `database` as JavaScript ESM into .tmp/apps/<database>. Each file is
 * replaced by a rename, and the folder is never emptied, so a server starting meanwhile (a
 * benchmark and the load tests may run at once) reads old or new files, never none.
 */
export async function generate(database: DatabaseId): Promise<string> {
  const dir = join(appsDir, database);
  const files = await renderGeneratedFiles({
    targets: targetIds,
    database,
    style: { language: 'js', moduleFormat: 'esm' },
    dir: '.',
    version: 'bench',
  });
  if (database === 'sqlite') {
    // node:sqlite's driver file beside better-sqlite3's (SQLITE_DRIVER picks; index stays).
    const builtIn = await renderGeneratedFiles({
      targets: [],
      database,
      driver: 'node:sqlite',
      style: { language: 'js', moduleFormat: 'esm' },
      dir: '.',
      version: 'bench',
    });
    files.push(...builtIn.filter((file) => file.path === 'runtime-node-sqlite.js'));
  }
  for (const file of files) {
    const path = join(dir, file.path);
    mkdirSync(dirname(path), { recursive: true });
    const temporary = `${path}.${process.pid}.tmp`;
    writeFileSync(temporary, file.content);
    renameSync(temporary, path);
  }
  return dir;
}

const usersCount = 1000;

/** Creates users (1..1000) and two accounts; returns how to reach the database. */
export async function prepareDatabase(
  database: DatabaseId,
  location: string,
): Promise<Record<string, string>> {
  if (database === 'postgres') {
    const client = new pg.Client({ connectionString: location });
    await client.connect();
    try {
      await client.query(`
        DROP TABLE IF EXISTS users, accounts;
        CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL);
        CREATE TABLE accounts (id integer PRIMARY KEY, balance integer NOT NULL);
        INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, ${usersCount}) AS i;
        INSERT INTO accounts VALUES (1, 1000000), (2, 1000000);
      `);
    } finally {
      await client.end();
    }
    return { DATABASE_URL: location };
  }
  if (database === 'mysql') {
    const conn = await mysql.createConnection({ uri: location });
    try {
      await conn.query('DROP TABLE IF EXISTS users, accounts');
      await conn.query('CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL)');
      await conn.query('CREATE TABLE accounts (id INT PRIMARY KEY, balance INT NOT NULL)');
      const users = Array.from({ length: usersCount }, (_, i) => [i + 1, `user ${i + 1}`]);
      await conn.query('INSERT INTO users (id, name) VALUES ?', [users]);
      await conn.query('INSERT INTO accounts VALUES (1, 1000000), (2, 1000000)');
    } finally {
      await conn.end();
    }
    return { DATABASE_URL: location };
  }
  removeSqlite(location);
  mkdirSync(dirname(location), { recursive: true });
  const connection = new BetterSqlite3(location);
  try {
    connection.pragma('journal_mode = WAL');
    connection.exec(`
      CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
      CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
      INSERT INTO accounts VALUES (1, 1000000), (2, 1000000);
    `);
    const insert = connection.prepare('INSERT INTO users VALUES (?, ?)');
    connection.transaction(() => {
      for (let i = 1; i <= usersCount; i++) insert.run(i, `user ${i}`);
    })();
  } finally {
    connection.close();
  }
  return { SQLITE_PATH: location };
}

/** A SQLite database file with its WAL and shared-memory files. */
export function removeSqlite(path: string): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
}

export interface RunningServer {
  url: string;
  child: ChildProcess;
  /** Stops the server: SIGTERM, then SIGKILL if it is still there after a few seconds. */
  stop(): Promise<void>;
}

export interface ServerOptions {
  /** Run this many processes sharing the port (node:cluster) instead of one. */
  workers?: number;
  /** The node binary that runs the server (benchmarks compare Node.js versions). */
  node?: string;
  /** Extra flags for that node, e.g. ['--cpu-prof']. */
  nodeOptions?: string[];
  /** How long it may take to listen; 20 s by default. */
  startMillis?: number;
}

/** The environment a server script reads (see servers/common.mjs). */
export function serverEnv(
  framework: Framework,
  mode: Mode,
  database: DatabaseId,
  env: Record<string, string>,
  port: number,
  workers = 1,
): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...env,
    MODE: mode,
    DB: database,
    PORT: String(port),
    GENERATED_DIR: join(appsDir, database),
    FRAMEWORK: framework,
    WORKERS: String(workers),
  };
}

const stopMillis = 5_000;

/** Every server still running, killed when this process exits whatever happened. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), stopMillis);
    await exited;
    clearTimeout(timer);
  }
  running.delete(child);
}

/**
 * Starts a server and waits until it listens (at most 20 s). If it does not start, it is
 * stopped before the error is thrown, so nothing it spawned is left behind.
 */
export async function startServer(
  framework: Framework,
  mode: Mode,
  database: DatabaseId,
  env: Record<string, string>,
  options: ServerOptions = {},
): Promise<RunningServer> {
  const port = await freePort();
  const script = options.workers ? 'cluster.mjs' : `${framework}.mjs`;
  const child = fork(join(serversDir, script), [], {
    cwd: serversDir,
    execPath: options.node ?? process.execPath,
    execArgv: ['--expose-gc', ...(options.nodeOptions ?? [])],
    env: serverEnv(framework, mode, database, env, port, options.workers ?? 1),
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  running.add(child);
  const startMillis = options.startMillis ?? 20_000;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${framework} did not start within ${startMillis / 1000} s`)),
        startMillis,
      );
      child.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${framework} server exited with ${code ?? signal} before listening`));
      });
    });
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    stop: () => stopChild(child),
  };
}

/** Every cluster worker's pool numbers, asked over IPC (a request would reach only one worker). */
export async function clusterStats(server: RunningServer): Promise<{ pool: { inUse: number } }[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      server.child.off('message', onMessage);
      reject(new Error('the cluster did not answer with its workers’ stats within 10 s'));
    }, 10_000);
    const onMessage = (message: { stats?: { pool: { inUse: number } }[] }) => {
      if (!message?.stats) return;
      clearTimeout(timer);
      server.child.off('message', onMessage);
      resolve(message.stats);
    };
    server.child.on('message', onMessage);
    server.child.send('stats');
  });
}
