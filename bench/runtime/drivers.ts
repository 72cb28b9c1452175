// The two SQLite drivers side by side: better-sqlite3 (runtime-sqlite) against Node's built-in
// node:sqlite (runtime-node-sqlite), in one process, on the same database file. First the raw
// statement, each library's own prepared statement on one connection: a primary-key get and a
// 100-row all(). Then the same through the runtime, as an adapter runs a request: a scope, the
// statement (which checks the connection out), the release. Paired as the runtime benchmark is
// (measure.ts): short rounds, ABBA order, medians, "added" = median of per-round differences.
//
//   node --import tsx bench/runtime/drivers.ts [--node 24] [--rounds 300] [--quick]
//
// node:sqlite needs Node 22.16 or later: `--node <line>` (default 24 when this Node is older)
// runs the benchmark on that supported line, with a better-sqlite3 built for it
// (test/support/node-lines.ts).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const option = (name: string) => {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
};
const major = Number(process.versions.node.split('.')[0]);
const wanted = option('--node') ?? (major < 22 ? '24' : undefined);

if (wanted !== undefined && Number(wanted) !== major) {
  // Run on the wanted line, once, and pass its exit code on.
  const { provisionNodeLine } = await import('../../test/support/node-lines.ts');
  const line = provisionNodeLine(Number(wanted), (text) => process.stderr.write(`${text}\n`));
  const rest = args.filter((arg, i) => arg !== '--node' && args[i - 1] !== '--node');
  const script = fileURLToPath(import.meta.url);
  const result = spawnSync(line.node, ['--import', 'tsx', script, ...rest], {
    stdio: 'inherit',
    env: { ...process.env, ...line.env },
  });
  process.exit(result.status ?? 1);
}

const { default: BetterSqlite3 } = await import('better-sqlite3');
const { DatabaseSync } = await import('node:sqlite');
const { compare, loadRuntime, machine, printTable } = await import('./measure.ts');
type Op = import('./measure.ts').Op;
type Result = import('./measure.ts').Result;

const quick = args.includes('--quick');
const ROUNDS = Number(option('--rounds') ?? (quick ? 30 : 300));
const ROWS = 1000;

const runtime = await loadRuntime();
const { NodeSqliteDatabase } = (await import(
  join(process.cwd(), 'bench', '.cache', 'runtime', 'runtime-node-sqlite.js')
)) as typeof import('../../src/runtime/runtime-node-sqlite.ts');
const { SqliteDatabase, createScope } = runtime;

const dir = mkdtempSync(join(tmpdir(), 'cdh-bench-drivers-'));
const path = join(dir, 'bench.db');
const setup = new BetterSqlite3(path);
setup.pragma('journal_mode = WAL');
setup.exec('CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, price real)');
const insert = setup.prepare('INSERT INTO items (id, name, price) VALUES (?, ?, ?)');
setup.transaction(() => {
  for (let id = 0; id < ROWS; id++) insert.run(id, `item ${id}`, id * 1.5);
})();
setup.pragma('wal_checkpoint(TRUNCATE)');
setup.close();

const GET = 'SELECT id, name, price FROM items WHERE id = ?';
const ALL = 'SELECT id, name, price FROM items WHERE id >= ? ORDER BY id LIMIT 100';
// Both raw sides with the settings the runtime gives its connections.
const better = new BetterSqlite3(path, { timeout: 5000 });
better.pragma('journal_mode = WAL');
better.pragma('synchronous = NORMAL');
const builtIn = new DatabaseSync(path, { timeout: 5000 });
builtIn.exec('PRAGMA journal_mode = WAL');
builtIn.exec('PRAGMA synchronous = NORMAL');
const [betterGet, betterAll] = [better.prepare(GET), better.prepare(ALL)];
const [nodeGet, nodeAll] = [builtIn.prepare(GET), builtIn.prepare(ALL)];

const dbBetter = new SqliteDatabase({ path, max: 10 });
const dbNode = new NodeSqliteDatabase({ path, max: 10 });
type AnyDb = typeof dbBetter | typeof dbNode;
const scoped =
  (db: AnyDb, sql: string, many: boolean): Op =>
  async (id) => {
    const scope = createScope(db);
    try {
      return await scope.run(() => (many ? db.query(sql, [id % 900]) : db.get(sql, [id])));
    } finally {
      scope.release();
    }
  };

const options = (ops: number) => ({ rounds: ROUNDS, ops, concurrency: 1, rows: ROWS });
const results: Result[] = [];
let versions = '';
try {
  results.push(
    await compare(
      'raw: primary-key get',
      async (id) => betterGet.get(id),
      async (id) => nodeGet.get(id),
      options(200),
    ),
    await compare(
      'raw: 100-row all()',
      async (id) => betterAll.all(id % 900),
      async (id) => nodeAll.all(id % 900),
      options(20),
    ),
    await compare(
      'runtime: a request with a primary-key get',
      scoped(dbBetter, GET, false),
      scoped(dbNode, GET, false),
      options(200),
    ),
    await compare(
      'runtime: a request with a 100-row query',
      scoped(dbBetter, ALL, true),
      scoped(dbNode, ALL, true),
      options(20),
    ),
  );
} finally {
  versions = `SQLite ${sqliteVersion(builtIn)} (node:sqlite), ${sqliteVersion(better)} (better-sqlite3)`;
  await Promise.all([dbBetter.closePool(), dbNode.closePool()]);
  better.close();
  builtIn.close();
  rmSync(dir, { recursive: true, force: true });
}

console.log(`Machine: ${machine()}; ${versions}`);
console.log(
  `Load average at the end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
console.log(`Rounds per case: ${ROUNDS} (ABBA order); medians over rounds\n`);
printTable({ a: 'better-sqlite3', b: 'node:sqlite' }, results);

function sqliteVersion(handle: { prepare(sql: string): { get(): unknown } }): string {
  return (handle.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v;
}
