// Runtime overhead benchmark: acquire → one-row query → release, through the runtime (a request
// scope: createScope, run + get with lazy checkout, release) against the raw driver doing the same
// (pg.Pool connect/query/release; one shared better-sqlite3 connection with a prepared
// statement). Then the reset of session state on check-in (reset.ts): the runtime before it
// against this one. Same process, same data, A and B alternated in ABBA order over several
// rounds; reports the median cost per operation in microseconds and the ratio.
//
//   node --import tsx bench/runtime/run.ts [--rounds 1000] [--quick] [--only sqlite|postgres]
//     [--table raw|reset] [--before <commit>]
//
// --before picks the runtime the reset table compares against (default: the last one without
// the reset); `--before HEAD` compares this runtime with itself, to see the noise.
//
// Starts its own throwaway PostgreSQL unless DATABASE_URL is set (as for the tests). The runtime
// is measured as users run it: stripped to plain JavaScript (measure.ts, loadRuntime).
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { createTestDatabase, postgresUrl } from '../../test/support/postgres.ts';
import {
  type CompareOptions,
  compare as compareOps,
  loadRuntime,
  machine,
  type Op,
  printTable,
  type Result,
} from './measure.ts';
import { BEFORE_RESET, benchReset } from './reset.ts';

const current = await loadRuntime();
const { PostgresDatabase, SqliteDatabase, createScope } = current;

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const option = (name: string) => {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
};
/** 'sqlite' or 'postgres' to run one database's cases. */
const only = option('--only');
/** 'raw' (the runtime against the raw driver) or 'reset' (before and after issue 23) alone. */
const table = option('--table');
const ROUNDS = Number(option('--rounds') ?? (quick ? 40 : 1000));
const beforeCommit = option('--before') ?? BEFORE_RESET;
const ROWS = 1000;

/**
 * What every framework adapter does per request: a scope, one query (which checks the
 * connection out, with the default lazy checkout), release.
 */
function scoped(
  db: InstanceType<typeof SqliteDatabase | typeof PostgresDatabase>,
  sql: string,
): Op {
  return async (id) => {
    const scope = createScope(db);
    try {
      return await scope.run(() => db.get(sql, [id]));
    } finally {
      scope.release(); // never rejects; adapters do not wait for it either
    }
  };
}

function compare(name: string, raw: Op, measured: Op, ops: number, concurrency: number) {
  const options: CompareOptions = { rounds: ROUNDS, ops, concurrency, rows: ROWS };
  return compareOps(name, raw, measured, options);
}

async function benchPostgres(): Promise<Result[]> {
  const database = await createTestDatabase();
  const pool = new pg.Pool({ connectionString: database.url, max: 10 });
  pool.on('error', () => {}); // as the runtime does: a dropped idle connection must not crash us
  const db = new PostgresDatabase({ connectionString: database.url, max: 10 });
  try {
    await db.run('CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)');
    await db.run(
      `INSERT INTO items SELECT g, 'item ' || g FROM generate_series(0, ${ROWS - 1}) AS g`,
    );
    const sql = 'SELECT id, name FROM items WHERE id = $1';
    const raw: Op = async (id) => {
      const client = await pool.connect();
      try {
        return (await client.query(sql, [id])).rows[0];
      } finally {
        client.release();
      }
    };
    const runtime = scoped(db, sql);
    return [
      await compare('PostgreSQL, 1 request at a time', raw, runtime, 20, 1),
      await compare('PostgreSQL, 10 requests in flight', raw, runtime, 100, 10),
    ];
  } finally {
    await pool.end();
    await db.closePool();
    await database.drop();
  }
}

async function benchSqlite(): Promise<Result[]> {
  const dir = mkdtempSync(join(tmpdir(), 'cdh-bench-'));
  const path = join(dir, 'bench.db');
  const setup = new BetterSqlite3(path);
  setup.pragma('journal_mode = WAL');
  setup.exec('CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)');
  const insert = setup.prepare('INSERT INTO items (id, name) VALUES (?, ?)');
  setup.transaction(() => {
    for (let id = 0; id < ROWS; id++) insert.run(id, `item ${id}`);
  })();
  // Both sides then read the database file itself, not pages still in the write-ahead log.
  setup.pragma('wal_checkpoint(TRUNCATE)');
  setup.close();
  // The raw side's one shared connection, opened with the settings the runtime uses.
  const shared = new BetterSqlite3(path, { timeout: 5000 });
  shared.pragma('journal_mode = WAL');
  shared.pragma('synchronous = NORMAL');
  const sql = 'SELECT id, name FROM items WHERE id = ?';
  const statement = shared.prepare(sql);
  const db = new SqliteDatabase({ path, max: 10 });
  try {
    // The raw side is as cheap as SQLite gets: one connection, one prepared statement.
    const raw: Op = async (id) => statement.get(id);
    const runtime = scoped(db, sql);
    // The floor for any per-request context on Node 20: the raw query inside its own
    // AsyncLocalStorage.run(), which the adapters need whatever the runtime does.
    const storage = new AsyncLocalStorage<object>();
    const rawInContext: Op = (id) => storage.run({}, async () => statement.get(id));
    // The floor for a promise-returning API such as db.get(), which the design asks for: the
    // same raw call behind a promise that the caller awaits. While AsyncLocalStorage is on, each
    // promise and each await pays Node 20's hooks, whatever the library does.
    const rawAwaited: Op = (id) =>
      storage.run({}, async () => await Promise.resolve(statement.get(id)));
    return [
      await compare('SQLite, 1 request at a time', raw, runtime, 200, 1),
      await compare('SQLite, 10 requests in flight', raw, runtime, 200, 10),
      await compare('SQLite floor: raw inside AsyncLocalStorage.run', raw, rawInContext, 200, 1),
      await compare(
        'SQLite floor: raw behind an awaited promise, in context',
        raw,
        rawAwaited,
        200,
        1,
      ),
    ];
  } finally {
    await db.closePool();
    shared.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: Result[] = [];
let resets: Result[] = [];
if (only !== 'sqlite') await postgresUrl();
if (table !== 'reset') {
  if (only !== 'sqlite') results.push(...(await benchPostgres()));
  if (only !== 'postgres') results.push(...(await benchSqlite()));
}
if (table !== 'raw') {
  const before = await loadRuntime(beforeCommit);
  resets = await benchReset(before, current, { rounds: ROUNDS, rows: ROWS, only });
}
console.log(`Machine: ${machine()}`);
console.log(
  `Load average at the end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
console.log(
  `Rounds per case: ${ROUNDS} (ABBA order); medians over rounds; ` +
    'added = median of the per-round differences\n',
);
if (results.length > 0) printTable({ a: 'raw', b: 'runtime' }, results);
if (resets.length > 0) {
  console.log(
    `\nThe reset on check-in: the runtime of commit ${beforeCommit} (before) against this one ` +
      '(after), each request awaiting its release\n',
  );
  printTable({ a: 'before', b: 'after' }, resets);
}
process.exit(0);
