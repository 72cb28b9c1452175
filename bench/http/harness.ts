// Shared by the HTTP benchmarks and the soak tests: generate the adapters into a folder the
// servers import, prepare the sample tables, start a server process and wait until it listens.
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { renderGeneratedFiles } from '../../src/cli/render.ts';
import { type DatabaseId, targetIds } from '../../src/cli/targets.ts';
import { freePort } from '../../test/support/postgres.ts';

export const benchDir = dirname(fileURLToPath(import.meta.url));
export type Framework = 'express' | 'fastify' | 'koa' | 'hono' | 'node-http' | 'fetch' | 'hooks';
export type Mode = 'generated' | 'baseline' | 'fastify-postgres';

/** Renders every target for `database` as JavaScript ESM into bench/http/.generated/<database>. */
export async function generate(database: DatabaseId): Promise<string> {
  const dir = join(benchDir, '.generated', database);
  rmSync(dir, { recursive: true, force: true });
  const files = await renderGeneratedFiles({
    targets: targetIds,
    database,
    style: { language: 'js', moduleFormat: 'esm' },
    dir: '.',
    version: 'bench',
  });
  for (const file of files) {
    mkdirSync(dirname(join(dir, file.path)), { recursive: true });
    writeFileSync(join(dir, file.path), file.content);
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
    await client.query(`
      DROP TABLE IF EXISTS users, accounts;
      CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL);
      CREATE TABLE accounts (id integer PRIMARY KEY, balance integer NOT NULL);
      INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, ${usersCount}) AS i;
      INSERT INTO accounts VALUES (1, 1000000), (2, 1000000);
    `);
    await client.end();
    return { DATABASE_URL: location };
  }
  rmSync(location, { force: true });
  const connection = new BetterSqlite3(location);
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
  connection.close();
  return { SQLITE_PATH: location };
}

export interface RunningServer {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function startServer(
  framework: Framework,
  mode: Mode,
  database: DatabaseId,
  env: Record<string, string>,
  /** Run this many processes sharing the port (node:cluster) instead of one. */
  workers?: number,
): Promise<RunningServer> {
  const port = await freePort();
  const script = workers ? 'cluster.mjs' : `${framework}.mjs`;
  const child = fork(join(benchDir, 'servers', script), [], {
    cwd: benchDir,
    execArgv: ['--expose-gc'],
    env: {
      ...process.env,
      ...env,
      MODE: mode,
      DB: database,
      PORT: String(port),
      GENERATED_DIR: join(benchDir, '.generated', database),
      FRAMEWORK: framework,
      WORKERS: String(workers ?? 1),
    },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${framework} did not start`)), 20_000);
    child.once('message', () => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => reject(new Error(`${framework} server exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Every cluster worker's pool numbers, asked over IPC (a request would reach only one worker). */
export async function clusterStats(server: RunningServer): Promise<{ pool: { inUse: number } }[]> {
  return new Promise((resolve) => {
    const onMessage = (message: { stats?: { pool: { inUse: number } }[] }) => {
      if (!message?.stats) return;
      server.child.off('message', onMessage);
      resolve(message.stats);
    };
    server.child.on('message', onMessage);
    server.child.send('stats');
  });
}
