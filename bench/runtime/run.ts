// Runtime overhead benchmark: acquire → one-row query → release, through the runtime (a request
// scope: createScope, connect, run + get, release) against the raw driver doing the same
// (pg.Pool connect/query/release; one shared better-sqlite3 connection with a prepared
// statement). Same process, same data, A and B alternated in ABBA order over several rounds;
// reports the median cost per operation in microseconds and the ratio.
//
//   node --import tsx bench/runtime/run.ts [--rounds 10] [--quick]
//
// Starts its own throwaway PostgreSQL unless DATABASE_URL is set (as for the tests).
//
// The runtime is measured as users run it: stripped to plain JavaScript by sucrase (as the CLI
// does) into bench/.cache/runtime, not through tsx, whose esbuild transform adds a __name() call
// to every function and closure and would inflate the runtime's cost several times over.
import { AsyncLocalStorage } from 'node:async_hooks';
import { execSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { transform } from 'sucrase';
import { createTestDatabase, postgresUrl } from '../../test/support/postgres.ts';

type PostgresModule = typeof import('../../src/runtime/runtime-postgres.ts');
type SqliteModule = typeof import('../../src/runtime/runtime-sqlite.ts');

/** Strips the runtime's types with sucrase into bench/.cache/runtime and imports it. */
async function loadRuntime(): Promise<PostgresModule & SqliteModule> {
  const out = join('bench', '.cache', 'runtime');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n');
  for (const name of ['runtime', 'runtime-postgres', 'runtime-sqlite']) {
    const source = readFileSync(join('src', 'runtime', `${name}.ts`), 'utf8');
    const { code } = transform(source, { transforms: ['typescript'], disableESTransforms: true });
    writeFileSync(join(out, `${name}.js`), code);
  }
  const postgres = await import(join(process.cwd(), out, 'runtime-postgres.js'));
  const sqlite = await import(join(process.cwd(), out, 'runtime-sqlite.js'));
  return { ...postgres, ...sqlite };
}

const { PostgresDatabase, SqliteDatabase } = await loadRuntime();

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const roundsArg = args.indexOf('--rounds');
const ROUNDS = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 6 : 30;
const ROWS = 1000;

type Op = (i: number) => Promise<unknown>;

interface Result {
  name: string;
  rawUs: number;
  runtimeUs: number;
  /** Median over rounds of (runtime - raw) in the same round: robust to a machine whose load drifts. */
  addedUs: number;
}

/** Runs `ops` operations with `concurrency` in flight; returns µs per operation. */
async function timeOps(op: Op, ops: number, concurrency: number): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ops) await op(next++ % ROWS);
    }),
  );
  return Number(process.hrtime.bigint() - started) / 1000 / ops;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function compare(
  name: string,
  raw: Op,
  runtime: Op,
  ops: number,
  concurrency: number,
): Promise<Result> {
  // Warm-up: JIT, connections opened, statements cached.
  await timeOps(raw, ops / 4, concurrency);
  await timeOps(runtime, ops / 4, concurrency);
  const rawRuns: number[] = [];
  const runtimeRuns: number[] = [];
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
  const result = {
    name,
    rawUs: median(rawRuns),
    runtimeUs: median(runtimeRuns),
    addedUs: median(runtimeRuns.map((us, round) => us - rawRuns[round]!)),
  };
  process.stderr.write(
    `${name}: raw ${result.rawUs.toFixed(2)} µs, runtime ${result.runtimeUs.toFixed(2)} µs\n`,
  );
  return result;
}

async function benchPostgres(): Promise<Result[]> {
  const database = await createTestDatabase();
  const pool = new pg.Pool({ connectionString: database.url, max: 10 });
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
    const runtime: Op = async (id) => {
      const scope = db.createScope();
      try {
        await scope.connect();
        return await scope.run(() => db.get(sql, [id]));
      } finally {
        await scope.release();
      }
    };
    const ops = quick ? 500 : 1000;
    return [
      await compare('PostgreSQL, 1 request at a time', raw, runtime, ops, 1),
      await compare('PostgreSQL, 10 requests in flight', raw, runtime, ops, 10),
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
  const sql = 'SELECT id, name FROM items WHERE id = ?';
  const statement = setup.prepare(sql);
  const db = new SqliteDatabase({ path, max: 10 });
  try {
    // The raw side is as cheap as SQLite gets: one connection, one prepared statement.
    const raw: Op = async (id) => statement.get(id);
    const runtime: Op = async (id) => {
      const scope = db.createScope();
      try {
        await scope.connect();
        return await scope.run(() => db.get(sql, [id]));
      } finally {
        await scope.release();
      }
    };
    // The floor for any per-request context on Node 20: the raw query inside its own
    // AsyncLocalStorage.run(), which the adapters need whatever the runtime does.
    const storage = new AsyncLocalStorage<object>();
    const rawInContext: Op = (id) => storage.run({}, async () => statement.get(id));
    const ops = quick ? 5000 : 20_000;
    return [
      await compare('SQLite, 1 request at a time', raw, runtime, ops, 1),
      await compare('SQLite, 10 requests in flight', raw, runtime, ops, 10),
      await compare('SQLite floor: raw inside AsyncLocalStorage.run', raw, rawInContext, ops, 1),
    ];
  } finally {
    await db.closePool();
    setup.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function machine(): string {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const nproc = execSync('nproc', { encoding: 'utf8' }).trim();
  return `${model}, nproc ${nproc}, Node ${process.version}, ${process.platform} ${process.arch}`;
}

await postgresUrl();
const results = [...(await benchPostgres()), ...(await benchSqlite())];
console.log(`Machine: ${machine()}`);
console.log(
  `Load average at the end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
console.log(
  `Rounds: ${ROUNDS}, ABBA order; medians over rounds; added = median of per-round differences\n`,
);
console.log('| case | raw driver (µs/op) | runtime (µs/op) | added (µs/op) | ratio |');
console.log('|---|---:|---:|---:|---:|');
for (const r of results) {
  const ratio = (r.rawUs + r.addedUs) / r.rawUs;
  console.log(
    `| ${r.name} | ${r.rawUs.toFixed(2)} | ${r.runtimeUs.toFixed(2)} | ${r.addedUs.toFixed(2)} | ${ratio.toFixed(3)} |`,
  );
}
process.exit(0);
