// Kysely through the generated binding (`--orm kysely`: Express + dbHooks, queries on the
// request's connection) against Kysely on its own pg.Pool (Kysely's PostgresDialect, no
// db-hooks), same Express route, same PostgreSQL, same run: GET /users/42, one
// selectFrom('users') each. Each round loads all the servers at once, so that the machine's
// changes of speed hit them alike; the result is the median of the per-round ratios of server CPU
// µs per request (the number to read), and of req/s.
//
//   node --import tsx bench/http/kysely.ts [--rounds 8] [--seconds 3] [--connections 32] [--quick]
//
// autocannon is the load generator, one per server; with taskset and two or more CPUs the servers
// share the last CPU, autocannon and PostgreSQL the others (as bench/http/run.ts does).
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import pg from 'pg';
import { renderGeneratedFiles } from '../../src/cli/render.ts';
import { linkDependencies } from '../../test/e2e/support/deps.ts';
import { startPostgres } from '../../test/support/postgres.ts';
import {
  benchDir,
  cpuMicros,
  cpuPlan,
  generatedDir,
  getUser,
  machineInfo,
  pin,
  serverNode,
} from './harness.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    quick: { type: 'boolean', default: false },
  },
});
const rounds = values.quick ? 1 : Number(values.rounds);
const seconds = values.quick ? 1 : Number(values.seconds);
const connections = Number(values.connections);

const route = `
app.get('/users/:id', async (req, res) => {
  const user = await orm
    .selectFrom('users')
    .select(['id', 'name'])
    .where('id', '=', Number(req.params.id))
    .executeTakeFirst();
  if (user) res.json(user);
  else res.status(404).json({ error: 'not found' });
});
const server = app.listen(0, '127.0.0.1', () => {
  console.log('listening on http://127.0.0.1:' + server.address().port);
});
`;

const servers = {
  binding: `import express from 'express';
import { dbHooks, skipGoneClients } from './db/express.js';
import { orm } from './db/kysely.js';

const app = express();
app.use(dbHooks());
${route}
app.use(skipGoneClients());`,
  'own pool': `import express from 'express';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';

// Kysely's own way: its PostgresDialect on a pg.Pool of the same size as db's.
const orm = new Kysely({
  dialect: new PostgresDialect({
    pool: new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 }),
  }),
});
const app = express();
${route}`,
  // For scale: the same route on db alone, no Kysely.
  'db.get': `import express from 'express';
import { db } from './db/index.js';
import { dbHooks, skipGoneClients } from './db/express.js';

const app = express();
app.use(dbHooks());
app.get('/users/:id', async (req, res) => {
  const user = await db.get('SELECT id, name FROM users WHERE id = $1', [Number(req.params.id)]);
  if (user) res.json(user);
  else res.status(404).json({ error: 'not found' });
});
app.use(skipGoneClients());
const server = app.listen(0, '127.0.0.1', () => {
  console.log('listening on http://127.0.0.1:' + server.address().port);
});
`,
  // And pg on its own: what Kysely costs, and what db-hooks does, each measured from it.
  'pg.Pool': `import express from 'express';
import pg from 'pg';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const app = express();
app.get('/users/:id', async (req, res) => {
  const { rows } = await pool.query('SELECT id, name FROM users WHERE id = $1', [
    Number(req.params.id),
  ]);
  if (rows[0]) res.json(rows[0]);
  else res.status(404).json({ error: 'not found' });
});
const server = app.listen(0, '127.0.0.1', () => {
  console.log('listening on http://127.0.0.1:' + server.address().port);
});
`,
} as const;
type Key = keyof typeof servers;
const keys = Object.keys(servers) as Key[];

async function project(): Promise<string> {
  const dir = join(generatedDir, 'kysely');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const style = { language: 'js', moduleFormat: 'esm' } as const;
  const files = await renderGeneratedFiles({
    targets: ['express'],
    orms: ['kysely'],
    database: 'postgres',
    style,
    dir: 'db',
    version: 'bench',
  });
  for (const file of files) {
    mkdirSync(join(dir, 'db'), { recursive: true });
    writeFileSync(join(dir, file.path), file.content);
  }
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  for (const key of keys) writeFileSync(join(dir, `${key.replace(' ', '-')}.js`), servers[key]);
  linkDependencies(dir);
  return dir;
}

interface Server {
  url: string;
  pid: number;
  stop(): void;
}

function start(dir: string, key: Key, env: Record<string, string>): Promise<Server> {
  const child = spawn(serverNode, [`${key.replace(' ', '-')}.js`], {
    cwd: dir,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      const url = /http:\/\/127\.0\.0\.1:\d+/.exec(out)?.[0];
      if (url) resolve({ url, pid: child.pid!, stop: () => child.kill('SIGKILL') });
    });
    child.once('exit', (code) => reject(new Error(`${key} exited with ${code}: ${out}`)));
  });
}

const plan = cpuPlan(cpus().length);
if (plan) pin(process.pid, plan.others);

const run = promisify(execFile);

async function load(url: string, duration: number) {
  const bin = createRequire(import.meta.url).resolve('autocannon');
  const argv = [
    bin,
    '--json',
    '-c',
    String(connections),
    '-d',
    String(duration),
    `${url}/users/42`,
  ];
  const [cmd, args] = plan
    ? ['taskset', ['-c', plan.others, process.execPath, ...argv]]
    : [process.execPath, argv];
  const { stdout } = await run(cmd as string, args as string[], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const result = JSON.parse(stdout);
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
    throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  }
  return { requestsPerSecond: result.requests.average as number, requests: result.requests.total };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

const loadAverageBefore = loadavg();
const postgres = process.env.DATABASE_URL ? undefined : await startPostgres();
const url = process.env.DATABASE_URL ?? postgres!.url;
const running: Server[] = [];
try {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query('DROP TABLE IF EXISTS users');
  await admin.query('CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL)');
  await admin.query(
    "INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, 1000) AS s(i)",
  );
  await admin.end();
  const dir = await project();
  for (const key of keys) {
    const server = await start(dir, key, { DATABASE_URL: url });
    running.push(server);
    if (plan) pin(server.pid, plan.server);
    await getUser(server.url, new Agent());
  }
  // All four at once, sharing the server CPU: the machine's changes of speed hit them alike.
  const measureAll = async (duration: number) => {
    const cpu0 = running.map((server) => cpuMicros(server.pid) ?? 0);
    const measured = await Promise.all(running.map((server) => load(server.url, duration)));
    return running.map((server, i) => ({
      rps: measured[i]!.requestsPerSecond,
      cpu: ((cpuMicros(server.pid) ?? 0) - cpu0[i]!) / measured[i]!.requests,
    }));
  };
  await measureAll(1); // warm-up
  const results: Record<Key, { rps: number; cpu: number }>[] = [];
  for (let round = 0; round < rounds; round++) {
    const measured = await measureAll(seconds);
    const result = Object.fromEntries(keys.map((key, i) => [key, measured[i]!])) as Record<
      Key,
      { rps: number; cpu: number }
    >;
    results.push(result);
    console.log(
      `round ${round + 1}: ${keys.map((k) => `${k} ${result[k].rps.toFixed(0)} req/s ${result[k].cpu.toFixed(0)} µs`).join(', ')}`,
    );
  }
  const ratio = median(results.map((r) => r.binding.rps / r['own pool'].rps));
  const cpuRatio = median(results.map((r) => r.binding.cpu / r['own pool'].cpu));
  const summary = {
    machine: { ...machineInfo(loadAverageBefore), pinned: plan ?? 'no' },
    commit: execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(),
    rounds,
    seconds,
    connections,
    binding: {
      requestsPerSecond: Math.round(median(results.map((r) => r.binding.rps))),
      cpuMicrosPerRequest: Number(median(results.map((r) => r.binding.cpu)).toFixed(1)),
    },
    ownPool: {
      requestsPerSecond: Math.round(median(results.map((r) => r['own pool'].rps))),
      cpuMicrosPerRequest: Number(median(results.map((r) => r['own pool'].cpu)).toFixed(1)),
    },
    dbGet: {
      requestsPerSecond: Math.round(median(results.map((r) => r['db.get'].rps))),
      cpuMicrosPerRequest: Number(median(results.map((r) => r['db.get'].cpu)).toFixed(1)),
    },
    pgPool: {
      requestsPerSecond: Math.round(median(results.map((r) => r['pg.Pool'].rps))),
      cpuMicrosPerRequest: Number(median(results.map((r) => r['pg.Pool'].cpu)).toFixed(1)),
    },
    ratio: Number(ratio.toFixed(3)),
    cpuRatio: Number(cpuRatio.toFixed(3)),
    // For scale: db.get through the same adapter, no Kysely, against Kysely on its own pool.
    dbGetRatio: Number(median(results.map((r) => r['db.get'].rps / r['own pool'].rps)).toFixed(3)),
    dbGetCpuRatio: Number(
      median(results.map((r) => r['db.get'].cpu / r['own pool'].cpu)).toFixed(3),
    ),
    results,
  };
  // A --quick smoke check leaves the recorded results as they are.
  if (!values.quick) {
    mkdirSync(join(benchDir, '..', 'results'), { recursive: true });
    writeFileSync(
      join(benchDir, '..', 'results', 'http-kysely.json'),
      `${JSON.stringify(summary, null, 2)}\n`,
    );
  }
  console.log(
    `\nbinding / own pool: ${(ratio * 100).toFixed(1)}% of the req/s, ` +
      `${(cpuRatio * 100).toFixed(1)}% of the server CPU per request`,
  );
} finally {
  for (const server of running) server.stop();
  await postgres?.stop();
}
