// Runtime overhead benchmark: acquire → one-row query → release, through the runtime (a request
// scope: createScope, run + get with lazy checkout, release) against the raw driver doing the same
// (pg.Pool connect/query/release; one shared better-sqlite3 connection with a prepared
// statement). Same process, same data, A and B alternated in ABBA order over several rounds;
// reports the median cost per operation in microseconds and the ratio.
//
//   node --import tsx bench/runtime/run.ts [--rounds 1000] [--quick] [--only sqlite|postgres]
//
// Starts its own throwaway PostgreSQL unless DATABASE_URL is set (as for the tests).
//
// The runtime is measured as users run it: stripped to plain JavaScript by sucrase (as the CLI
// does) into bench/.cache/runtime, not through tsx, whose esbuild transform adds a __name() call
// to every function and closure and would inflate the runtime's cost several times over.
import { AsyncLocalStorage, createHook } from 'node:async_hooks';
import { execSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { transform } from 'sucrase';
import { createTestDatabase, postgresUrl } from '../../test/support/postgres.ts';

type PostgresModule = typeof import('../../src/runtime/runtime-postgres.ts');
type SqliteModule = typeof import('../../src/runtime/runtime-sqlite.ts');
type CoreModule = typeof import('../../src/runtime/runtime.ts');

/** Strips the runtime's types with sucrase into bench/.cache/runtime and imports it. */
async function loadRuntime(): Promise<PostgresModule & SqliteModule & CoreModule> {
  const out = join('bench', '.cache', 'runtime');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n');
  for (const file of readdirSync(join('src', 'runtime'))) {
    const source = readFileSync(join('src', 'runtime', file), 'utf8');
    const { code } = transform(source, { transforms: ['typescript'], disableESTransforms: true });
    writeFileSync(join(out, file.replace(/\.ts$/, '.js')), code);
  }
  const load = (name: string) => import(join(process.cwd(), out, `${name}.js`));
  const [core, postgres, sqlite] = await Promise.all(
    ['runtime', 'runtime-postgres', 'runtime-sqlite'].map(load),
  );
  return { ...core, ...postgres, ...sqlite };
}

const { PostgresDatabase, SqliteDatabase, createScope } = await loadRuntime();

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyArg = args.indexOf('--only');
/** 'sqlite' or 'postgres' to run one database's cases. */
const only = onlyArg >= 0 ? args[onlyArg + 1] : undefined;
const roundsArg = args.indexOf('--rounds');
const ROUNDS = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 40 : 1000;
const ROWS = 1000;

type Op = (i: number) => Promise<unknown>;

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

interface Sample {
  /** Wall-clock µs per operation. */
  wall: number;
  /** This process's CPU µs (user + system) per operation: the client-side cost, which the
   * machine's other load disturbs far less than wall-clock time. */
  cpu: number;
}

interface Result {
  name: string;
  raw: Sample;
  runtime: Sample;
  /** Median over rounds of (runtime - raw) wall time in the same round. */
  addedWall: number;
  /** The same for CPU time. */
  addedCpu: number;
  /** Promises created per operation (raw, runtime): exact, whatever the machine's load. */
  promises: [number, number];
}

/** Counts the promises one operation creates; each costs Node 20's AsyncLocalStorage a hook call. */
async function promisesPerOp(op: Op): Promise<number> {
  let count = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === 'PROMISE') count++;
    },
  });
  await op(0);
  hook.enable();
  for (let i = 0; i < 100; i++) await op(i);
  hook.disable();
  return count / 100;
}

/** Runs `ops` operations with `concurrency` in flight. */
async function timeOps(op: Op, ops: number, concurrency: number): Promise<Sample> {
  let next = 0;
  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ops) await op(next++ % ROWS);
    }),
  );
  const wall = Number(process.hrtime.bigint() - started) / 1000 / ops;
  const cpu = process.cpuUsage(cpuBefore);
  return { wall, cpu: (cpu.user + cpu.system) / ops };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Many short rounds (`ops` operations each), raw and runtime alternated in ABBA order. Short
 * rounds and medians keep a busy machine's load spikes from landing on one side only.
 */
async function compare(
  name: string,
  raw: Op,
  runtime: Op,
  ops: number,
  concurrency: number,
): Promise<Result> {
  // Warm-up: JIT, connections opened, statements cached.
  for (let i = 0; i < 20; i++) {
    await timeOps(raw, ops, concurrency);
    await timeOps(runtime, ops, concurrency);
  }
  const rawRuns: Sample[] = [];
  const runtimeRuns: Sample[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // ABBA: neither side always runs first.
    if (round % 2 === 0) {
      rawRuns.push(await timeOps(raw, ops, concurrency));
      runtimeRuns.push(await timeOps(runtime, ops, concurrency));
    } else {
      runtimeRuns.push(await timeOps(runtime, ops, concurrency));
      rawRuns.push(await timeOps(raw, ops, concurrency));
    }
  }
  const summary = (runs: Sample[]): Sample => ({
    wall: median(runs.map((r) => r.wall)),
    cpu: median(runs.map((r) => r.cpu)),
  });
  const result: Result = {
    name,
    raw: summary(rawRuns),
    runtime: summary(runtimeRuns),
    addedWall: median(runtimeRuns.map((r, round) => r.wall - rawRuns[round]!.wall)),
    addedCpu: median(runtimeRuns.map((r, round) => r.cpu - rawRuns[round]!.cpu)),
    promises: [await promisesPerOp(raw), await promisesPerOp(runtime)],
  };
  process.stderr.write(
    `${name}: raw ${result.raw.wall.toFixed(2)} µs, runtime ${result.runtime.wall.toFixed(2)} µs\n`,
  );
  return result;
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

function machine(): string {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const nproc = execSync('nproc', { encoding: 'utf8' }).trim();
  return `${model}, nproc ${nproc}, Node ${process.version}, ${process.platform} ${process.arch}`;
}

const results: Result[] = [];
if (only !== 'sqlite') {
  await postgresUrl();
  results.push(...(await benchPostgres()));
}
if (only !== 'postgres') results.push(...(await benchSqlite()));
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
console.log(
  '| case | raw wall (µs/op) | runtime wall (µs/op) | added wall (µs/op) | wall ratio | ' +
    'raw CPU (µs/op) | runtime CPU (µs/op) | added CPU (µs/op) | promises/op raw → runtime |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
const f = (n: number) => n.toFixed(2);
for (const r of results) {
  const ratio = (r.raw.wall + r.addedWall) / r.raw.wall;
  console.log(
    `| ${r.name} | ${f(r.raw.wall)} | ${f(r.runtime.wall)} | ${f(r.addedWall)} | ` +
      `${ratio.toFixed(3)} | ${f(r.raw.cpu)} | ${f(r.runtime.cpu)} | ${f(r.addedCpu)} | ` +
      `${r.promises[0]} → ${r.promises[1]} |`,
  );
}
process.exit(0);
