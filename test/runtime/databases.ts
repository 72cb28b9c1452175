// The real databases the runtime tests run against: SQLite files in a temp directory, on each of
// the two SQLite drivers (better-sqlite3 and Node's built-in node:sqlite), a fresh PostgreSQL
// database per test, and a fresh MySQL (MariaDB) database per test. Tests write SQL with `?`
// placeholders and pass it through `sql()`, which numbers them ($1, $2, ...) for PostgreSQL.
// TEST_KINDS=mysql (names, comma-separated) runs only those kinds.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Database, DatabaseOptions } from '../../src/runtime/runtime.ts';
import { MysqlDatabase, type MysqlOptions } from '../../src/runtime/runtime-mysql.ts';
import {
  NodeSqliteDatabase,
  type NodeSqliteOptions,
} from '../../src/runtime/runtime-node-sqlite.ts';
import { PostgresDatabase, type PostgresOptions } from '../../src/runtime/runtime-postgres.ts';
import { SqliteDatabase, type SqliteOptions } from '../../src/runtime/runtime-sqlite.ts';
import { createMysqlTestDatabase, mysqlAdmin, mysqlSkip } from '../support/mariadb.ts';
import { createTestDatabase } from '../support/postgres.ts';

export type PoolOptions = Pick<
  DatabaseOptions,
  'max' | 'acquireTimeoutMillis' | 'closeTimeoutMillis' | 'leakDetectionThresholdMillis' | 'logger'
>;

export interface Opened<Db extends Database = Database> {
  db: Db;
  /** Rewrites `?` placeholders for this database. */
  sql(text: string): string;
  /** PostgreSQL only: the database URL, for a separate admin connection. */
  url?: string;
  /** MySQL only: the database URL, for a separate admin connection (mysqlAdmin). */
  mysqlUrl?: string;
  /** SQLite only: the database file. */
  path?: string;
  /** Closes the pool (if the test did not) and deletes the database. */
  cleanup(): Promise<void>;
}

export interface Kind {
  /** For test names: the database, or for SQLite the driver. */
  name: 'sqlite' | 'node:sqlite' | 'postgres' | 'mysql';
  database: 'sqlite' | 'postgres' | 'mysql';
  /** `pragmas` is for SQLite only. */
  open(options?: KindOptions): Promise<Opened>;
  /** Why this kind's tests are skipped here (no server to be had), for describe()'s `skip`. */
  skip?: string | undefined;
}

export type KindOptions = PoolOptions & {
  onConnect?: (connection: any) => void | Promise<void>;
  pragmas?: Record<string, string | number>;
};

/** The SQLite drivers: better-sqlite3 (runtime-sqlite) and node:sqlite (runtime-node-sqlite). */
export type SqliteDriverName = 'better-sqlite3' | 'node:sqlite';
export const sqliteDrivers: readonly SqliteDriverName[] = ['better-sqlite3', 'node:sqlite'];

/** Options of either SQLite driver (each takes its library's own and ignores the other's). */
export type AnySqliteOptions = Omit<SqliteOptions, 'onConnect'> &
  Omit<NodeSqliteOptions, 'onConnect'> & {
    onConnect?: (connection: any) => void | Promise<void>;
  };

/**
 * A SqliteDatabase on either driver. Typed as the better-sqlite3 one: both are the same
 * Database, only their connections' handles differ.
 */
export function newSqlite(
  driver: SqliteDriverName,
  options: AnySqliteOptions = {},
): SqliteDatabase {
  if (driver === 'better-sqlite3') return new SqliteDatabase(options);
  return new NodeSqliteDatabase(options) as unknown as SqliteDatabase;
}

/** Any SqliteDatabase option but the file, which is app.db in a new temp directory. */
export async function openSqlite(
  options: Omit<AnySqliteOptions, 'path'> & {
    parentDir?: string;
    /** Default better-sqlite3. */
    driver?: SqliteDriverName;
  } = {},
): Promise<Opened<SqliteDatabase>> {
  const { parentDir = tmpdir(), driver = 'better-sqlite3', ...poolOptions } = options;
  const dir = mkdtempSync(join(parentDir, 'cdh-sqlite-'));
  const path = join(dir, 'app.db');
  // Tests that wait longer for a connection wait as long for their turn to write.
  const writeTimeoutMillis = options.writeTimeoutMillis ?? options.acquireTimeoutMillis;
  const db = newSqlite(driver, { path, ...poolOptions, writeTimeoutMillis });
  return {
    db,
    path,
    sql: (text) => text,
    async cleanup() {
      await db.closePool();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Any PostgresDatabase option (pg's PoolConfig and ours) but the server, a new test database. */
export async function openPostgres(
  options: Omit<PostgresOptions, 'connectionString'> = {},
): Promise<Opened<PostgresDatabase>> {
  const database = await createTestDatabase();
  const db = new PostgresDatabase({ connectionString: database.url, ...options });
  return {
    db,
    url: database.url,
    sql: (text) => {
      let n = 0;
      return text.replace(/\?/g, () => `$${++n}`);
    },
    async cleanup() {
      await db.closePool();
      await database.drop();
    },
  };
}

/** Any MysqlDatabase option (mysql2's ConnectionOptions and ours) but the server: a new database. */
export async function openMysql(
  options: Omit<MysqlOptions, 'uri'> = {},
): Promise<Opened<MysqlDatabase>> {
  const database = await createMysqlTestDatabase();
  const db = new MysqlDatabase({ uri: database.url, ...options });
  return {
    db,
    mysqlUrl: database.url,
    sql: (text) => text,
    async cleanup() {
      await db.closePool();
      await database.drop();
    },
  };
}

/**
 * test/run.ts sets TEST_MYSQL=off on every Node line but the newest: mysql2 is plain JavaScript,
 * so what the MySQL tests check does not differ by line.
 */
export const mysqlOff = process.env.TEST_MYSQL === 'off';
/** Why the MySQL-only tests do not run here, if they do not. */
export const mysqlSkipReason = mysqlOff
  ? 'MySQL runs on the newest Node line only (TEST_MYSQL=off)'
  : mysqlSkip;

const only = process.env.TEST_KINDS?.split(',');
export const kinds: Kind[] = (
  [
    { name: 'sqlite', database: 'sqlite', open: openSqlite },
    {
      name: 'node:sqlite',
      database: 'sqlite',
      open: (options) => openSqlite({ ...options, driver: 'node:sqlite' }),
    },
    { name: 'postgres', database: 'postgres', open: (options) => openPostgres(options) },
    { name: 'mysql', database: 'mysql', open: (options) => openMysql(options), skip: mysqlSkip },
  ] satisfies Kind[]
).filter((kind) => (only ? only.includes(kind.name) : kind.name !== 'mysql' || !mysqlOff));

/** Runs body with a freshly opened database and always cleans up. */
export async function withDatabase<T>(
  kind: Kind,
  options: PoolOptions,
  body: (opened: Opened) => Promise<T>,
): Promise<T> {
  const opened = await kind.open(options);
  try {
    return await body(opened);
  } finally {
    await opened.cleanup();
  }
}

export const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Whether `promise` settles before a timer of `millis` fires (it goes on either way). Timers fire
 * in the order they fall due, so with `millis` a multiple of the timer that should settle it, this
 * checks order, not speed: a loaded machine delays both alike.
 */
export async function settlesWithin(promise: Promise<unknown>, millis: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<false>((resolve) => {
    timer = setTimeout(resolve, millis, false);
  });
  const settled = promise.then(
    () => true as const,
    () => true as const,
  );
  try {
    return await Promise.race([settled, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits until check() is true, polling. The deadline only turns a hang into a failure: it is far
 * past anything a loaded machine takes, so no test should pass a short one.
 */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMillis = 15_000) {
  const deadline = Date.now() + timeoutMillis;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMillis} ms`);
    await sleep(5);
  }
}

/** A logger that keeps what it is given, for tests that check what the operator is told. */
export interface CapturingLogger {
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
  warnings: string[];
  errors: string[];
}

export function capturingLogger(): CapturingLogger {
  const text = (args: unknown[]) =>
    args.map((a) => (a instanceof Error ? `${a.message}\n${a.stack}` : String(a))).join(' ');
  const logger: CapturingLogger = {
    warnings: [],
    errors: [],
    warn: (...args) => logger.warnings.push(text(args)),
    error: (...args) => logger.errors.push(text(args)),
  };
  return logger;
}

/**
 * Counts connections handed back to the driver (its checkIn, on the protected `driver`), to
 * prove "exactly once".
 */
export function countReleases(db: Database): { count: number; discarded: number } {
  const counter = { count: 0, discarded: 0 };
  const target = (db as any).driver;
  const original = target.checkIn.bind(target);
  target.checkIn = (conn: unknown, discard: boolean) => {
    counter.count++;
    if (discard) counter.discarded++;
    return original(conn, discard);
  };
  return counter;
}

/** Records the connections the driver hands out (its checkOut). */
export function recordAcquires<Conn = unknown>(db: Database): Conn[] {
  const acquired: Conn[] = [];
  const target = (db as any).driver;
  const original = target.checkOut.bind(target);
  target.checkOut = async () => {
    const conn = (await original()) as Conn;
    acquired.push(conn);
    return conn;
  };
  return acquired;
}

/** Records which connection object ran each statement (the driver's execute). */
export function recordStatements(db: Database): Array<{ sql: string; conn: unknown }> {
  const ran: Array<{ sql: string; conn: unknown }> = [];
  const target = (db as any).driver;
  const original = target.execute.bind(target);
  target.execute = (
    conn: unknown,
    mode: string,
    sql: string,
    params: unknown,
    options: unknown,
  ) => {
    ran.push({ sql, conn });
    return original(conn, mode, sql, params, options);
  };
  return ran;
}

/**
 * Which connection the current scope's statements run on: PostgreSQL's backend pid, MySQL's
 * connection id, or the
 * SQLite connection object the driver was handed (seen through a wrapped execute()).
 */
export function identify(opened: Opened): () => Promise<unknown> {
  const { db } = opened;
  if (opened.url) {
    return async () => (await db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid;
  }
  if (opened.mysqlUrl) {
    return async () => (await db.get<{ id: number }>('SELECT CONNECTION_ID() AS id'))!.id;
  }
  const ran = recordStatements(db);
  return async () => {
    await db.get('SELECT 1 AS whoami');
    return ran.filter((r) => r.sql === 'SELECT 1 AS whoami').at(-1)!.conn;
  };
}

/** Runs use() on a client of its own, outside any pool: to look at the server from the side. */
export async function admin<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** MySQL's view of the database at `url`: the ids of the other connections to it. */
export async function mysqlSessions(url: string): Promise<number[]> {
  return mysqlAdmin(url, async (conn) => {
    const [rows] = await conn.query(
      'SELECT ID AS id FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID() ORDER BY ID',
    );
    return (rows as Array<{ id: number }>).map((row) => Number(row.id));
  });
}
