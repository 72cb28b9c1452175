// Prisma 7 through the generated binding (`--orm prisma`: Express + dbHooks, prismaFor() over
// prismaAdapter(), queries on the request's connection) against Prisma on its own pool
// (@prisma/adapter-pg's PrismaPg, no db-hooks), same Express route, same PostgreSQL, same run:
// GET /users/42, one findUnique each (on its own pool Prisma may batch the findUnique calls of a
// tick into one query; through the binding each is sent alone). The client is generated once by
// `prisma generate` (offline, as in test/e2e/prisma.test.ts); the servers run it with tsx.
// Each round loads all the servers at once, so that the machine's changes of speed hit them
// alike; the result is the median of the per-round ratios of server CPU µs per request (the
// number to read), and of req/s.
//
//   node --import tsx bench/http/prisma.ts [--rounds 8] [--seconds 3] [--connections 32] [--quick]
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
import { binary, linkDependencies } from '../../test/e2e/support/deps.ts';
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
  const user = await prisma.user.findUnique({
    where: { id: Number(req.params.id) },
    select: { id: true, name: true },
  });
  if (user) res.json(user);
  else res.status(404).json({ error: 'not found' });
});
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log('listening on http://127.0.0.1:' + (typeof address === 'object' && address ? address.port : 0));
});
`;

const servers = {
  binding: `import express from 'express';
import { dbHooks, skipGoneClients } from './db/express.js';
import { prismaAdapter, prismaFor } from './db/prisma.js';
import { PrismaClient } from './generated/client.js';

const prisma = prismaFor(new PrismaClient({ adapter: prismaAdapter() }));
const app = express();
app.use(dbHooks());
${route}
app.use(skipGoneClients());`,
  'own pool': `import { PrismaPg } from '@prisma/adapter-pg';
import express from 'express';
import { PrismaClient } from './generated/client.js';

// Prisma's own way: @prisma/adapter-pg on a pg.Pool of the same size as db's.
const adapter = new PrismaPg({ connectionString: process.env.DATABASE_URL, max: 10 });
const prisma = new PrismaClient({ adapter });
const app = express();
${route}`,
  // For scale: the same route on db alone, no Prisma.
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
  const address = server.address();
  console.log('listening on http://127.0.0.1:' + (typeof address === 'object' && address ? address.port : 0));
});
`,
} as const;
type Key = keyof typeof servers;
const keys = Object.keys(servers) as Key[];

const schema = `generator client {
  provider            = "prisma-client"
  output              = "./generated"
  moduleFormat        = "esm"
  importFileExtension = "js"
}

datasource db {
  provider = "postgresql"
}

model User {
  id   Int    @id
  name String
  @@map("users")
}
`;

async function project(): Promise<string> {
  const dir = join(generatedDir, 'prisma');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'db'), { recursive: true });
  const style = { language: 'ts', moduleFormat: 'esm' } as const;
  const files = await renderGeneratedFiles({
    targets: ['express'],
    orms: ['prisma'],
    database: 'postgres',
    style,
    dir: 'db',
    version: 'bench',
  });
  for (const file of files) writeFileSync(join(dir, file.path), file.content);
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  writeFileSync(join(dir, 'schema.prisma'), schema);
  for (const key of keys) writeFileSync(join(dir, `${key.replace(' ', '-')}.ts`), servers[key]);
  linkDependencies(dir);
  // Prisma 7's client needs no engine; generate looks for the schema engine all the same.
  await run(process.execPath, [binary('prisma', 'build/index.js'), 'generate'], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PRISMA_SCHEMA_ENGINE_BINARY: '/bin/true',
      CHECKPOINT_DISABLE: '1',
    },
  });
  return dir;
}

interface Server {
  url: string;
  pid: number;
  stop(): void;
}

function start(dir: string, key: Key, env: Record<string, string>): Promise<Server> {
  const child = spawn(serverNode, ['--import', tsxLoader, `${key.replace(' ', '-')}.ts`], {
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

const tsxLoader = import.meta.resolve('tsx');
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
  // All three at once, sharing the server CPU: the machine's changes of speed hit them alike.
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
    ratio: Number(ratio.toFixed(3)),
    cpuRatio: Number(cpuRatio.toFixed(3)),
    // For scale: db.get through the same adapter, no Prisma, against Prisma on its own pool.
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
      join(benchDir, '..', 'results', 'http-prisma.json'),
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
