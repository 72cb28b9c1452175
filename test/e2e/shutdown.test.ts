// End to end: the sample app the CLI writes into an empty directory shuts down promptly with
// keep-alive clients, for every target on SQLite (TypeScript) and PostgreSQL (JavaScript, ESM
// and CommonJS in turn). The app runs on the real framework, over real HTTP on 127.0.0.1, with:
// - keep-alive clients sending one request after another (node:http Agents, one socket each),
//   still sending when SIGTERM arrives and after;
// - idle keep-alive connections, each left open after one request;
// - slow clients: on a connection that has already served a request, the next request's headers
//   are sent up to their last line before SIGTERM and finished 200 ms after it;
// - on PostgreSQL, the test holds a lock on the users table, so that every keep-alive client's
//   request waits inside its handler when SIGTERM arrives; the lock goes 200 ms after it.
// Then: every request in flight at SIGTERM (the slow clients', and on PostgreSQL the ones held by
// the lock) gets its complete 200; any other request gets a complete 200 or is refused before
// an answer began; the server closes every connection; the process exits by itself with code 0
// within 2 s of the last response; nothing was logged as an error or warning.
//
// E2E_FILTER=fastify (a substring of the case names) runs some of the cases only.
import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import pg from 'pg';
import { databaseIds, targetIds } from '../../src/cli/targets.ts';
import { mysqlOff, mysqlSkipReason } from '../runtime/databases.ts';
import { createMysqlTestDatabase } from '../support/mariadb.ts';
import { createTestDatabase } from '../support/postgres.ts';
import { installDependencies } from './support/deps.ts';
import { fetchReply } from './support/http.ts';
import {
  type Case,
  caseName,
  createProject,
  type RunningApp,
  startApp,
} from './support/project.ts';

const cases: Case[] = [];
// MySQL on the newest Node line only (TEST_MYSQL=off on the others), without the lock step.
for (const database of databaseIds.filter((id) => id !== 'mysql' || !mysqlOff)) {
  targetIds.forEach((target, i) => {
    const variant = database === 'sqlite' ? 'ts' : i % 2 === 0 ? 'js-esm' : 'js-cjs';
    cases.push({ target, database, variant });
  });
}
const filter = process.env.E2E_FILTER;
const selected = filter ? cases.filter((c) => caseName(c).includes(filter)) : cases;

const keepAliveClients = 4;
const idleClients = 2;
const slowClients = 2;
/** How long after SIGTERM the slow clients finish their request and the lock goes. */
const holdMillis = 200;
/** The promise: the process is gone this long after the last response at the latest. */
const exitMillis = 2000;
/** Waits for what a broken shutdown never does, bounded. */
const patienceMillis = 4000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const users: Record<string, unknown> = {
  '/users/1': { id: 1, name: 'Ada Lovelace' },
  '/users/2': { id: 2, name: 'Alan Turing' },
};

/** One request and what became of it; times from performance.now(). */
interface Outcome {
  client: string;
  path: string;
  sentAt: number;
  endedAt?: number;
  status?: number;
  body?: string;
  /** The request failed; `answered` says whether part of a response had arrived. */
  error?: string;
  answered?: boolean;
}

/** Every client connection of a case, to see that the server closed them all, and when. */
class Connections {
  #clients = new Map<Socket, string>();
  #closedAt = new Map<Socket, number>();

  add(client: string, socket: Socket): void {
    if (this.#clients.has(socket)) return;
    this.#clients.set(socket, client);
    socket.once('close', () => this.#closedAt.set(socket, performance.now()));
  }

  /** Waits until all are closed or `until` has passed; resolves with the open ones' clients. */
  async waitClosed(until: number): Promise<string[]> {
    const open = () => [...this.#clients].filter(([socket]) => !this.#closedAt.has(socket));
    for (; open().length > 0 && performance.now() < until; await sleep(10));
    return open().map(([, client]) => client);
  }

  /** When the last one closed. */
  lastClosedAt(): number {
    return Math.max(...this.#closedAt.values());
  }

  destroy(): void {
    for (const socket of this.#clients.keys()) socket.destroy();
  }
}

/** GET over `agent`; resolves with the outcome, whatever happens. */
function get(
  url: string,
  path: string,
  agent: Agent,
  client: string,
  connections: Connections,
): Promise<Outcome> {
  const outcome: Outcome = { client, path, sentAt: performance.now(), answered: false };
  return new Promise((resolve) => {
    let settled = false;
    const settle = (update: Partial<Outcome>) => {
      if (settled) return;
      settled = true;
      Object.assign(outcome, update, { endedAt: performance.now() });
      resolve(outcome);
    };
    const fail = (error: Error & { code?: string }) =>
      settle({ error: error.code ?? error.message });
    const req = httpRequest(`${url}${path}`, { agent });
    req.on('socket', (socket) => connections.add(client, socket));
    req.once('error', fail);
    req.once('response', (res) => {
      outcome.answered = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.once('error', fail);
      res.once('end', () => settle({ status: res.statusCode, body }));
      res.once('close', () => {
        if (!res.complete) fail(new Error('the response was cut short'));
      });
    });
    req.end();
  });
}

/**
 * Sends one request after another on one keep-alive connection until a request fails (the
 * server has closed) or the time in `deadline` has passed.
 */
async function keepSending(
  url: string,
  agent: Agent,
  client: string,
  deadline: { at: number },
  outcomes: Outcome[],
  connections: Connections,
): Promise<void> {
  const path = client.endsWith('1') ? '/users/2' : '/users/1';
  while (performance.now() < deadline.at) {
    const outcome = await get(url, path, agent, client, connections);
    outcomes.push(outcome);
    if (outcome.error !== undefined) break;
  }
}

interface Response {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The HTTP/1.1 responses in `raw`, as far as they are complete. */
function parseResponses(raw: string): Response[] {
  const responses: Response[] = [];
  let rest = raw;
  for (;;) {
    const headEnd = rest.indexOf('\r\n\r\n');
    if (headEnd === -1) return responses;
    const [statusLine, ...lines] = rest.slice(0, headEnd).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    let body = '';
    rest = rest.slice(headEnd + 4);
    if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const sizeEnd = rest.indexOf('\r\n');
        if (sizeEnd === -1) return responses;
        const size = Number.parseInt(rest.slice(0, sizeEnd), 16);
        if (rest.length < sizeEnd + 2 + size + 2) return responses;
        body += rest.slice(sizeEnd + 2, sizeEnd + 2 + size);
        rest = rest.slice(sizeEnd + 2 + size + 2);
        if (size === 0) break;
      }
    } else {
      const length = Number(headers['content-length'] ?? 0);
      if (rest.length < length) return responses;
      body = rest.slice(0, length);
      rest = rest.slice(length);
    }
    responses.push({ status: Number(statusLine!.split(' ')[1]), headers, body });
  }
}

/**
 * A slow client on a raw socket: one whole request, then the next one's headers without the
 * empty line that ends them, which `finish()` sends.
 */
async function slowClient(url: string, client: string, connections: Connections) {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  connections.add(client, socket);
  let raw = '';
  let endedByServer = false;
  let error: string | undefined;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    raw += chunk;
  });
  socket.on('end', () => {
    endedByServer = true;
  });
  socket.on('error', (e: Error & { code?: string }) => {
    error ??= e.code ?? e.message;
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const head = (path: string) => `GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n`;
  socket.write(`${head('/users/1')}\r\n`);
  for (const deadline = performance.now() + 5000; parseResponses(raw).length < 1; await sleep(5)) {
    assert.ok(performance.now() < deadline, `${client}: no answer to its first request: ${raw}`);
  }
  assert.equal(parseResponses(raw)[0]!.status, 200, raw);
  const firstLength = raw.length;
  const outcome: Outcome = { client, path: '/users/2', sentAt: 0 };
  return {
    start() {
      outcome.sentAt = performance.now();
      socket.write(head('/users/2'));
    },
    finish() {
      socket.write('\r\n');
    },
    /** The second request's outcome, once the connection has closed or `until` has passed. */
    async outcome(until: number): Promise<Outcome> {
      for (; !socket.closed && performance.now() < until; await sleep(5));
      const second = parseResponses(raw)[1];
      if (second) {
        Object.assign(outcome, { status: second.status, body: second.body, answered: true });
      } else {
        outcome.answered = raw.length > firstLength;
        outcome.error = error ?? (socket.closed ? 'closed without an answer' : 'no answer');
      }
      outcome.endedAt = performance.now();
      return outcome;
    },
    endedByServer: () => endedByServer,
  };
}

/** The sessions waiting for a lock (PostgreSQL), seen from outside the locking transaction. */
async function lockWaiters(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    );
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

async function runCase(c: Case): Promise<void> {
  const postgres = c.database === 'postgres' ? await createTestDatabase() : undefined;
  const mysql = c.database === 'mysql' ? await createMysqlTestDatabase() : undefined;
  const project = await createProject(c).catch(async (error: unknown) => {
    await postgres?.drop();
    await mysql?.drop();
    throw error;
  });
  const server = postgres ?? mysql;
  const env: Record<string, string> = server
    ? { DATABASE_URL: server.url }
    : { SQLITE_PATH: join(project.dir, 'app.db') };
  const connections = new Connections();
  const agents: Agent[] = [];
  let locker: pg.Client | undefined;
  let app: RunningApp | undefined;
  try {
    app = await startApp(project, 'app', env);
    const { url, child } = app;
    const exited = new Promise<{ code: number | null; at: number }>((resolve) => {
      child.once('exit', (code) => resolve({ code, at: performance.now() }));
    });
    const outcomes: Outcome[] = [];

    // Idle keep-alive connections, and the slow clients' first requests.
    for (let i = 0; i < idleClients; i++) {
      const agent = new Agent({ keepAlive: true });
      agents.push(agent);
      const outcome = await get(url, '/users/1', agent, `idle${i}`, connections);
      assert.equal(outcome.status, 200, JSON.stringify(outcome));
    }
    const slow = [];
    for (let i = 0; i < slowClients; i++) slow.push(await slowClient(url, `slow${i}`, connections));

    // The keep-alive clients; on PostgreSQL each one's first request waits for the lock.
    if (postgres) {
      locker = new pg.Client({ connectionString: postgres.url });
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
    }
    const deadline = { at: performance.now() + 20_000 };
    const sending = Array.from({ length: keepAliveClients }, (_, i) => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      agents.push(agent);
      return keepSending(url, agent, `keep-alive${i}`, deadline, outcomes, connections);
    });
    for (const until = performance.now() + 5000; ; await sleep(10)) {
      const ready = locker
        ? (await lockWaiters(postgres!.url)) >= keepAliveClients
        : outcomes.filter((o) => o.status === 200).length >= 5 * keepAliveClients;
      if (ready) break;
      assert.ok(performance.now() < until, `the load did not start:\n${app.output()}`);
    }

    // The slow clients' second requests, read by the server before SIGTERM: it has answered a
    // request sent after them (on a connection of its own, on a route that does not query).
    for (const client of slow) client.start();
    await sleep(20);
    const probe = await fetchReply(`${url}/__probe`);
    assert.equal(probe.status, 404, probe.body);

    const killedAt = performance.now();
    child.kill('SIGTERM');
    deadline.at = killedAt + patienceMillis;
    await sleep(holdMillis);
    for (const client of slow) client.finish();
    if (locker) {
      await locker.query('COMMIT');
      await locker.end();
      locker = undefined;
    }

    await Promise.all(sending);
    for (const client of slow) outcomes.push(await client.outcome(deadline.at));
    const open = await connections.waitClosed(deadline.at);
    const exit = await Promise.race([exited, sleep(exitMillis + 1000).then(() => undefined)]);
    const output = app.output();
    const show = (o: Outcome) => `${JSON.stringify(o)}\n${output}`;

    // In flight at SIGTERM: the slow clients' requests, and on PostgreSQL the first request of
    // every keep-alive client (held in its handler by the lock). Each got its whole answer.
    const inFlight = outcomes.filter(
      (o) => o.client.startsWith('slow') || (postgres !== undefined && o.sentAt < killedAt),
    );
    assert.equal(inFlight.length, slowClients + (postgres ? keepAliveClients : 0));
    for (const o of inFlight) {
      assert.equal(o.status, 200, `in flight at SIGTERM: ${show(o)}`);
      assert.deepEqual(JSON.parse(o.body!), users[o.path]);
    }
    // Any other request: a whole 200, or refused (or its connection closed) before an answer
    // began, as it came while the server closed.
    for (const o of outcomes) {
      if (o.status !== undefined) {
        assert.equal(o.status, 200, show(o));
        assert.deepEqual(JSON.parse(o.body!), users[o.path]);
      } else {
        assert.ok(!o.answered, `the answer was cut short: ${show(o)}`);
      }
    }
    // Every keep-alive client stopped because the server closed, not because time ran out.
    for (let i = 0; i < keepAliveClients; i++) {
      const last = outcomes.filter((o) => o.client === `keep-alive${i}`).at(-1);
      assert.ok(
        last?.error !== undefined,
        `keep-alive${i} was still served ${patienceMillis} ms after SIGTERM:\n${output}`,
      );
    }
    const lastResponse = Math.max(...outcomes.map((o) => (o.status ? o.endedAt! : 0)));

    // The server closed every connection, and the process ended, soon after the last response.
    const since = (at: number) => `${Math.round(at - lastResponse)} ms after the last response`;
    assert.deepEqual(open, [], `connections open ${since(deadline.at)}:\n${output}`);
    const lastClosed = connections.lastClosedAt();
    assert.ok(lastClosed - lastResponse <= exitMillis, `the last one closed ${since(lastClosed)}`);
    for (const client of slow) assert.ok(client.endedByServer(), 'a slow client closed first');
    assert.ok(exit, `the process was still running ${since(performance.now())}:\n${output}`);
    assert.equal(exit.code, 0, `exit code ${exit.code}:\n${output}`);
    const afterLast = exit.at - lastResponse;
    assert.ok(afterLast <= exitMillis, `the process exited ${since(exit.at)}:\n${output}`);
    assert.doesNotMatch(output, /error|warn|exception|unhandled/i);
    if (process.env.E2E_DEBUG) {
      const answered = outcomes.filter((o) => o.status === 200).length;
      const refused = outcomes.filter((o) => o.error !== undefined).map((o) => o.error);
      process.stderr.write(
        `${caseName(c)}: ${answered} answers, refused: ${refused.join(' ')}; ` +
          `exit ${Math.round(exit.at - killedAt)} ms after SIGTERM, ` +
          `${Math.round(afterLast)} ms after the last response\n`,
      );
    }
  } finally {
    await locker?.end().catch(() => {});
    await app?.stop(1000);
    for (const agent of agents) agent.destroy();
    connections.destroy();
    project.remove();
    await postgres?.drop();
    await mysql?.drop();
  }
}

before(() => {
  installDependencies();
});

describe('the sample app shuts down promptly with keep-alive clients', () => {
  for (const c of selected) {
    const skip = c.database === 'mysql' ? mysqlSkipReason : undefined;
    test(caseName(c), { skip }, () => runCase(c));
  }
});
