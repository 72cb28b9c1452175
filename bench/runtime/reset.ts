// What the reset of session state on check-in costs a request (issue 23), side by side with the
// runtime before it (commit BEFORE_RESET, loaded from git) in one process, on the same data: a
// request that changed nothing (it pays the test of each statement's text, and nothing else),
// and one that did (PostgreSQL: set_config(..., false), then DISCARD ALL on check-in, and the
// onConnect hook again when there is one; SQLite: a pragma set, then a new connection). Each
// request awaits its release here, so the reset's round trip counts; the adapters release after
// the response is sent, so a client does not wait for it. Run by run.ts (--table reset).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { createTestDatabase } from '../../test/support/postgres.ts';
import { compare, type Op, type Result, type Runtime } from './measure.ts';

/** The last commit whose runtime had no reset on check-in. */
export const BEFORE_RESET = '7384b3a';

type AnyDatabase = InstanceType<Runtime['PostgresDatabase'] | Runtime['SqliteDatabase']>;
type Statement = [sql: string, params?: (id: number) => unknown[]];

/** A request as the adapters run one: its scope, its statements, its release (awaited here). */
function request(runtime: Runtime, db: AnyDatabase, statements: Statement[]): Op {
  return async (id) => {
    const scope = runtime.createScope(db);
    try {
      await scope.run(async () => {
        for (const [sql, params] of statements) await db.get(sql, params?.(id));
      });
    } finally {
      await scope.release();
    }
  };
}

interface Options {
  rounds: number;
  rows: number;
  only?: string | undefined;
}

export async function benchReset(
  before: Runtime,
  after: Runtime,
  { rounds, rows, only }: Options,
): Promise<Result[]> {
  const results: Result[] = [];
  if (only !== 'sqlite') results.push(...(await postgres(before, after, rounds, rows)));
  if (only !== 'postgres') results.push(...(await sqlite(before, after, rounds, rows)));
  results.push(...(await textTests(rounds)));
  return results;
}

async function postgres(before: Runtime, after: Runtime, rounds: number, rows: number) {
  const database = await createTestDatabase();
  const opened: AnyDatabase[] = [];
  const open = (runtime: Runtime, withHook: boolean) => {
    const db = new runtime.PostgresDatabase({
      connectionString: database.url,
      max: 10,
      ...(withHook && { onConnect: (client) => client.query("SET app.hook = 'on'") }),
    });
    opened.push(db);
    return db;
  };
  const find: Statement = ['SELECT id, name FROM items WHERE id = $1', (id) => [id]];
  const setUser: Statement = ["SELECT set_config('app.user_id', $1, false)", (id) => [String(id)]];
  try {
    const setup = open(after, false);
    await setup.run('CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)');
    await setup.run(
      `INSERT INTO items SELECT g, 'item ' || g FROM generate_series(0, ${rows - 1}) AS g`,
    );
    const pair = (withHook: boolean, statements: Statement[]) =>
      [
        request(before, open(before, withHook), statements),
        request(after, open(after, withHook), statements),
      ] as const;
    const options = (ops: number, concurrency: number) => ({ rounds, ops, concurrency, rows });
    return [
      await compare('PostgreSQL, changed nothing', ...pair(false, [find]), options(20, 1)),
      await compare(
        'PostgreSQL, changed nothing, 10 requests in flight',
        ...pair(false, [find]),
        options(100, 10),
      ),
      await compare(
        'PostgreSQL, set_config(..., false): DISCARD ALL after',
        ...pair(false, [setUser, find]),
        options(20, 1),
      ),
      await compare(
        'PostgreSQL, set_config(..., false), onConnect runs one SET: DISCARD ALL, SET after',
        ...pair(true, [setUser, find]),
        options(20, 1),
      ),
    ];
  } finally {
    for (const db of opened) await db.closePool();
    await database.drop();
  }
}

async function sqlite(before: Runtime, after: Runtime, rounds: number, rows: number) {
  const dir = mkdtempSync(join(tmpdir(), 'cdh-bench-reset-'));
  const path = join(dir, 'bench.db');
  const setup = new BetterSqlite3(path);
  setup.pragma('journal_mode = WAL');
  setup.exec('CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)');
  const insert = setup.prepare('INSERT INTO items (id, name) VALUES (?, ?)');
  setup.transaction(() => {
    for (let id = 0; id < rows; id++) insert.run(id, `item ${id}`);
  })();
  setup.pragma('wal_checkpoint(TRUNCATE)');
  setup.close();
  const opened: AnyDatabase[] = [];
  const open = (runtime: Runtime) => {
    const db = new runtime.SqliteDatabase({ path, max: 10 });
    opened.push(db);
    return db;
  };
  const find: Statement = ['SELECT id, name FROM items WHERE id = ?', (id) => [id]];
  const setPragma: Statement = ['PRAGMA cache_size = -4000'];
  const pair = (statements: Statement[]) =>
    [request(before, open(before), statements), request(after, open(after), statements)] as const;
  const options = (ops: number, concurrency: number) => ({ rounds, ops, concurrency, rows });
  try {
    return [
      await compare('SQLite, changed nothing', ...pair([find]), options(200, 1)),
      await compare(
        'SQLite, changed nothing, 10 requests in flight',
        ...pair([find]),
        options(200, 10),
      ),
      await compare(
        'SQLite, a pragma set: a new connection after',
        ...pair([setPragma, find]),
        options(100, 1),
      ),
    ];
  } finally {
    for (const db of opened) await db.closePool();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The test of a statement's text alone, the whole added cost of a PostgreSQL request that changed
 * nothing, against an empty function: a short query, and a 1 kB one as ORMs write them.
 */
async function textTests(rounds: number): Promise<Result[]> {
  const session: typeof import('../../src/runtime/runtime-session.ts') = await import(
    join(process.cwd(), 'bench', '.cache', 'runtime', 'runtime-session.js')
  );
  const short = 'SELECT id, name FROM items WHERE id = $1';
  const columns = Array.from({ length: 40 }, (_, i) => `"items"."column_${i}"`).join(', ');
  const long = `select ${columns} from "items" inner join "owners" on "owners"."id" = "items"."owner_id" where "items"."id" = $1 and "owners"."name" = $2 order by "items"."id" limit $3`;
  let found = 0;
  const times =
    (sql: string, test: (sql: string) => unknown): Op =>
    async () => {
      for (let i = 0; i < 1000; i++) if (test(sql) !== undefined) found++;
    };
  const none = () => undefined;
  const options = { rounds, ops: 10, concurrency: 1, rows: 1 };
  const results = [
    await compare(
      `PostgreSQL: the text test alone, ${short.length} characters (per 1000 statements)`,
      times(short, none),
      times(short, session.postgresSessionChange),
      options,
    ),
    await compare(
      `PostgreSQL: the text test alone, ${long.length} characters (per 1000 statements)`,
      times(long, none),
      times(long, session.postgresSessionChange),
      options,
    ),
  ];
  if (found > 0) throw new Error('a plain SELECT was taken for a session change');
  return results;
}
