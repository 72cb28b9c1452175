// Peak memory of a large response: the same rows sent by a node:http server through the runtime
// either with db.stream() piped to the response, or loaded whole with db.query() and then sent.
// Each (database, way, row count) runs in a server process of its own, and the number is the
// process's peak resident set (the kernel's maxRSS) after the response, less the peak after a
// one-row warm-up: what answering cost at worst. Rows are a series the database makes, 100
// characters of padding each; the client reads the whole body and drops it.
//
//   node --import tsx bench/http/stream-memory.ts [--rows 100000,1000000,3000000] [--all-max 1000000] [--only postgres]
//   BENCH_NODE=/path/to/node24 node --import tsx bench/http/stream-memory.ts   servers on Node 24
//
// SQLite on better-sqlite3 when the servers run on this script's Node.js (its build), on
// node:sqlite when they run on 22.16 or later. PostgreSQL: DATABASE_URL, or a throwaway server
// (test/support/postgres.ts). Results: bench/results/http-stream-memory[-nodeNN].json.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, get } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createScope, type Database } from '../../src/runtime/runtime.ts';
import { PostgresDatabase } from '../../src/runtime/runtime-postgres.ts';
import { createTestDatabase } from '../../test/support/postgres.ts';
import { benchDir, machineInfo, resultsSuffix, serverNode, serverNodeVersion } from './harness.ts';

const SQLITE_SERIES =
  'WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) ' +
  "SELECT n, printf('%.100c', 'x') AS pad FROM s";
const SERIES = {
  postgres: "SELECT n, repeat('x', 100) AS pad FROM generate_series(1, $1::int) AS n",
  sqlite: SQLITE_SERIES,
  'node:sqlite': SQLITE_SERIES,
};
type Kind = keyof typeof SERIES;

/** The server: GET /stream?count= and /all?count=, and /peak (maxRSS in bytes). */
async function serve(kind: Kind): Promise<void> {
  const path = process.env.SQLITE_PATH;
  let db: Database;
  if (kind === 'postgres')
    db = new PostgresDatabase({ connectionString: process.env.DATABASE_URL });
  // Loaded only here: the driving script may run on a Node.js without node:sqlite, or another
  // than the one better-sqlite3 was built for.
  else if (kind === 'node:sqlite') {
    const { NodeSqliteDatabase } = await import('../../src/runtime/runtime-node-sqlite.ts');
    db = new NodeSqliteDatabase({ path });
  } else db = new (await import('../../src/runtime/runtime-sqlite.ts')).SqliteDatabase({ path });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/peak') {
      res.end(String(process.resourceUsage().maxRSS * 1024));
      return;
    }
    const scope = createScope(db);
    res.on('close', () => void scope.release());
    const params = [Number(url.searchParams.get('count'))];
    scope
      .run(async () => {
        res.setHeader('content-type', 'application/x-ndjson');
        if (url.pathname === '/stream') {
          async function* lines() {
            for await (const row of db.stream(SERIES[kind], params)) {
              yield `${JSON.stringify(row)}\n`;
            }
          }
          await pipeline(Readable.from(lines()), res);
        } else {
          const rows = await db.query(SERIES[kind], params);
          res.end(rows.map((row) => `${JSON.stringify(row)}\n`).join(''));
        }
      })
      .catch((error: unknown) => {
        console.error(error);
        res.destroy();
      });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.stdout.write(`${typeof address === 'object' && address ? address.port : ''}\n`);
  });
}

/** GET `url`; the body's length in bytes (read and dropped). */
function fetchLength(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let length = 0;
      res.on('data', (chunk: Buffer) => {
        length += chunk.length;
      });
      res.on('end', () => resolve(length));
      res.on('error', reject);
    }).on('error', reject);
  });
}

interface Measure {
  database: Kind;
  way: 'stream' | 'all';
  rows: number;
  bodyMB: number;
  warmPeakMB: number;
  peakMB: number;
  addedPeakMB: number;
}

async function measure(
  kind: Kind,
  way: 'stream' | 'all',
  rows: number,
  env: Record<string, string>,
): Promise<Measure> {
  const child = spawn(
    serverNode,
    [
      ...(process.env.BENCH_NODE_OPTIONS?.split(' ').filter(Boolean) ?? []),
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      '--serve',
      kind,
    ],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const port = await new Promise<string>((resolve) => {
      child.stdout!.setEncoding('utf8').once('data', (text: string) => resolve(text.trim()));
    });
    const base = `http://127.0.0.1:${port}`;
    await fetchLength(`${base}/${way}?count=1`);
    const warm = Number(await (await fetch(`${base}/peak`)).text());
    const length = await fetchLength(`${base}/${way}?count=${rows}`);
    const peak = Number(await (await fetch(`${base}/peak`)).text());
    const mb = (bytes: number) => Number((bytes / 2 ** 20).toFixed(1));
    return {
      database: kind,
      way,
      rows,
      bodyMB: mb(length),
      warmPeakMB: mb(warm),
      peakMB: mb(peak),
      addedPeakMB: mb(peak - warm),
    };
  } finally {
    child.kill();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'string' },
      only: { type: 'string' },
      rows: { type: 'string', default: '100000,1000000,3000000' },
      // Loading every row at once is measured up to this many: past it, it takes gigabytes.
      'all-max': { type: 'string', default: '1000000' },
    },
  });
  if (values.serve) return serve(values.serve as Kind);
  const load = loadavg();
  const counts = values.rows.split(',').map(Number);
  const [major, minor] = serverNodeVersion.slice(1).split('.').map(Number) as [number, number];
  const kinds = (['sqlite', 'node:sqlite', 'postgres'] as const).filter(
    (k) =>
      (!values.only || values.only === k) &&
      (k !== 'sqlite' || resultsSuffix === '') &&
      (k !== 'node:sqlite' || major > 22 || (major === 22 && minor >= 16)),
  );
  const dir = mkdtempSync(join(tmpdir(), 'cdh-stream-bench-'));
  const results: Measure[] = [];
  try {
    for (const kind of kinds) {
      const postgres = kind === 'postgres' ? await createTestDatabase() : undefined;
      const env: Record<string, string> = postgres
        ? { DATABASE_URL: postgres.url }
        : { SQLITE_PATH: join(dir, 'bench.db') };
      try {
        for (const rows of counts) {
          for (const way of ['stream', 'all'] as const) {
            if (way === 'all' && rows > Number(values['all-max'])) continue;
            const result = await measure(kind, way, rows, env);
            results.push(result);
            console.log(
              `${kind} ${way} ${rows} rows (${result.bodyMB} MB body): peak RSS +${result.addedPeakMB} MB`,
            );
          }
        }
      } finally {
        await postgres?.drop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(join(benchDir, '..', 'results'), { recursive: true });
  const file = join(benchDir, '..', 'results', `http-stream-memory${resultsSuffix}.json`);
  writeFileSync(file, `${JSON.stringify({ machine: machineInfo(load), results }, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
  // The throwaway PostgreSQL stops when this process exits.
  process.exit(0);
}

await main();
