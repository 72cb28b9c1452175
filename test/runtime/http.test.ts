// scopeForRequest() on a real node:http server (no framework) and scopeForFetch() with
// releaseWhenRead(), on both databases: the request's connection goes back exactly once whether
// the response was sent, the client hung up before or during the handler, or pipelined requests
// were cut off; body events run inside the request's scope; a second adapter steps aside.
import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as connectTcp } from 'node:net';
import { describe, test } from 'node:test';
import {
  createScope,
  type Database,
  type RequestScope,
  ScopeReleasedError,
} from '../../src/runtime/runtime.ts';
import { releaseWhenRead, scopeForFetch } from '../../src/runtime/runtime-fetch.ts';
import { scopeForRequest } from '../../src/runtime/runtime-node.ts';
import {
  capturingLogger,
  countReleases,
  identify,
  kinds,
  recordAcquires,
  sleep,
  tick,
  waitFor,
  withDatabase,
} from './databases.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => unknown;

/** A node:http server on 127.0.0.1; handler errors become 500s (and are kept for the test). */
async function serve(handler: Handler): Promise<{
  port: number;
  errors: unknown[];
  close(): Promise<void>;
}> {
  const errors: unknown[] = [];
  const server = http.createServer((req, res) => {
    Promise.resolve()
      .then(() => handler(req, res))
      .catch((error: unknown) => {
        errors.push(error);
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    errors,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The adapter: the request's scope, with the handler run inside it. */
function withScope(db: Database<any>, handler: Handler, scopes?: RequestScope[]): Handler {
  return (req, res) => {
    const scope = scopeForRequest(db, req, res);
    assert.ok(scope, 'a first adapter gets a scope');
    scopes?.push(scope);
    return scope.run(() => handler(req, res));
  };
}

function get(
  port: number,
  path: string,
  agent?: http.Agent,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

/** A promise with its resolve function, for handlers to say where they are. */
function signal<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

for (const kind of kinds) {
  describe(`${kind.name}: scopeForRequest on node:http`, () => {
    test('a normal request releases its connection once, when the response is over', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db }) => {
        const releases = countReleases(db);
        const scopes: RequestScope[] = [];
        const server = await serve(
          withScope(
            db,
            async (_req, res) => {
              const row = await db.get<{ one: number }>('SELECT 1 AS one');
              await db.get('SELECT 2 AS two');
              res.end(JSON.stringify(row));
            },
            scopes,
          ),
        );
        const agent = new http.Agent({ keepAlive: true }); // the socket outlives each response
        try {
          for (let i = 0; i < 3; i++) {
            assert.deepEqual(await get(server.port, `/x?i=${i}`, agent), {
              status: 200,
              body: '{"one":1}',
            });
            await waitFor(() => releases.count === i + 1);
            assert.equal(db.stats().inUse, 0, 'released while the keep-alive socket stays open');
          }
          await sleep(50);
          assert.equal(releases.count, 3, 'exactly once per request');
          assert.deepEqual(server.errors, []);
          await assert.rejects(
            scopes[0]!.run(() => db.get('SELECT 1')),
            (error: unknown) => {
              assert.ok(error instanceof ScopeReleasedError, `got ${String(error)}`);
              assert.equal(error.reason, 'done');
              return true;
            },
          );
        } finally {
          agent.destroy();
          await server.close();
        }
      });
    });

    test('a client that hangs up before the first statement: no connection, later statements refused', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db }) => {
        const acquired = recordAcquires(db);
        const started = signal();
        const refused = signal<unknown>();
        let inUseSeen = 0;
        const server = await serve(
          withScope(db, async (_req, res) => {
            started.resolve();
            await new Promise((resolve) => res.once('close', resolve)); // e.g. a slow API call
            await sleep(20);
            inUseSeen = Math.max(inUseSeen, db.stats().inUse);
            try {
              await db.get('SELECT 1 AS one');
            } catch (error) {
              refused.resolve(error);
              throw error;
            }
            refused.resolve(undefined);
          }),
        );
        try {
          const client = http.get({ host: '127.0.0.1', port: server.port, path: '/slow' });
          client.on('error', () => {});
          await started.promise;
          client.destroy();
          const error = await refused.promise;
          assert.ok(error instanceof ScopeReleasedError, `got ${String(error)}`);
          assert.equal(error.reason, 'client-gone');
          assert.deepEqual([error.status, error.expose], [499, true]);
          assert.equal(inUseSeen, 0);
          assert.equal(acquired.length, 0, 'the request never took a connection');
          assert.equal(db.stats().inUse, 0);
        } finally {
          await server.close();
        }
      });
    });

    test('a client that left before the adapter ran (a slow middleware in front)', async () => {
      await withDatabase(kind, { max: 1 }, async ({ db }) => {
        const outcome = signal<{ released: boolean; error: unknown }>();
        const arrived = signal();
        const server = await serve(async (req, res) => {
          arrived.resolve();
          await new Promise((resolve) => res.once('close', resolve)); // the middleware awaits
          const scope = scopeForRequest(db, req, res)!;
          const released = scope.released;
          const error = await scope
            .run(() => db.get('SELECT 1 AS one'))
            .then(
              () => undefined,
              (failure: unknown) => failure,
            );
          outcome.resolve({ released, error });
        });
        try {
          const client = http.get({ host: '127.0.0.1', port: server.port, path: '/late' });
          client.on('error', () => {});
          await arrived.promise;
          client.destroy();
          const { released, error } = await outcome.promise;
          assert.equal(released, true, 'released at once: the client is already gone');
          assert.ok(error instanceof ScopeReleasedError, `got ${String(error)}`);
          assert.equal(error.reason, 'client-gone');
          assert.equal(db.stats().inUse, 0);
          // The single connection still serves the next request.
          assert.deepEqual(await db.get('SELECT 1 AS one'), { one: 1 });
        } finally {
          await server.close();
        }
      });
    });

    test('a client that hangs up while its first statement waits for the pool leaves the queue at once', async () => {
      await withDatabase(kind, { max: 1, acquireTimeoutMillis: 5000 }, async ({ db }) => {
        const holder = createScope(db);
        await holder.connect(); // the pool is full
        const refused = signal<unknown>();
        const server = await serve(
          withScope(db, async () => {
            const error = await db.get('SELECT 1 AS one').then(
              () => undefined,
              (failure: unknown) => failure,
            );
            refused.resolve(error);
          }),
        );
        try {
          const client = http.get({ host: '127.0.0.1', port: server.port, path: '/wait' });
          client.on('error', () => {});
          await waitFor(() => db.stats().waiting === 1);
          client.destroy();
          // Refused because the client left; the deadline would have given PoolTimeoutError.
          const error = await refused.promise;
          assert.ok(error instanceof ScopeReleasedError, `got ${String(error)}`);
          assert.equal(error.reason, 'client-gone');
          assert.equal(db.stats().waiting, 0);
          await holder.release();
          assert.equal(db.stats().inUse, 0);
        } finally {
          await server.close();
        }
      });
    });

    test('three pipelined requests cut off by the client: every connection comes back', async () => {
      await withDatabase(kind, { max: 5, acquireTimeoutMillis: 2000 }, async ({ db }) => {
        const releases = countReleases(db);
        const handlersMayAnswer = signal();
        let queried = 0;
        let resumed = 0;
        const server = await serve(
          withScope(db, async (_req, res) => {
            await db.get('SELECT 1 AS one'); // holds a connection from here on
            queried++;
            await handlersMayAnswer.promise;
            resumed++;
            res.end('ok');
          }),
        );
        try {
          const socket = connectTcp(server.port, '127.0.0.1');
          socket.on('error', () => {});
          await new Promise((resolve) => socket.once('connect', resolve));
          const request = (path: string) => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`;
          socket.write(request('/a') + request('/b') + request('/c'));
          await waitFor(() => queried === 3 && db.stats().inUse === 3);
          socket.destroy(); // before any answer
          // At the hang-up, while the handlers still wait: the two queued responses too.
          await waitFor(() => db.stats().inUse === 0);
          assert.equal(resumed, 0);
          handlersMayAnswer.resolve();
          await waitFor(() => resumed === 3); // they go on and try to answer
          await tick();
          assert.equal(db.stats().inUse, 0);
          assert.equal(releases.count, 3, 'each connection back exactly once');
          assert.deepEqual(db.stats().waiting, 0);
        } finally {
          await server.close();
        }
      });
    });

    test('an adapter registered twice: the second call returns undefined, one scope covers the request', async () => {
      await withDatabase(kind, { max: 2 }, async ({ db }) => {
        const acquired = recordAcquires(db);
        const releases = countReleases(db);
        const seen: Array<RequestScope | undefined> = [];
        const server = await serve((req, res) => {
          const outer = scopeForRequest(db, req, res);
          seen.push(outer);
          return outer!.run(async () => {
            const inner = scopeForRequest(db, req, res); // the same adapter again, on a router
            seen.push(inner);
            await db.get('SELECT 1 AS one');
            res.end('ok');
          });
        });
        try {
          assert.equal((await get(server.port, '/twice')).status, 200);
          await waitFor(() => releases.count === 1);
          assert.equal(seen.length, 2);
          assert.ok(seen[0] !== undefined, 'the first call gets the scope');
          assert.equal(seen[1], undefined, 'the second steps aside');
          assert.equal(acquired.length, 1, 'one connection for the request');
          assert.equal(db.stats().inUse, 0);
        } finally {
          await server.close();
        }
      });
    });

    test("the request body's 'data' and 'end' listeners run inside the request's scope", async (t) => {
      await withDatabase(kind, { max: 2 }, async (opened) => {
        const { db } = opened;
        const whoami = identify(opened);
        const acquired = recordAcquires(db);
        const seen = signal<{ before: unknown; inData: unknown; atEnd: unknown; body: string }>();
        const listening = signal();
        const server = await serve(
          withScope(db, async (req, res) => {
            const before = await whoami();
            let body = '';
            let inData: Promise<unknown> | undefined;
            req.setEncoding('utf8');
            req.on('data', (chunk: string) => {
              body += chunk;
              inData ??= whoami();
            });
            req.on('end', async () => {
              try {
                const atEnd = await whoami();
                seen.resolve({ before, inData: await inData, atEnd, body });
                res.end('ok');
              } catch (error) {
                seen.resolve({ before, inData: error, atEnd: error, body });
                res.writeHead(500).end();
              }
            });
            listening.resolve();
          }),
        );
        try {
          const client = http.request({
            host: '127.0.0.1',
            port: server.port,
            method: 'POST',
            path: '/upload',
            headers: { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' },
          });
          client.on('error', () => {});
          client.flushHeaders();
          // The body arrives after the handler listens (not buffered until then): Node emits
          // these events from the connection, not from the handler.
          await listening.promise;
          await sleep(20);
          client.write('first,');
          await sleep(50);
          client.end('second');
          const { before, inData, atEnd, body } = await seen.promise;
          assert.equal(body, 'first,second');
          t.diagnostic(
            `${kind.name}: ${typeof before === 'number' ? `backend ${before}` : 'object'}`,
          );
          assert.equal(inData, before, "a statement in 'data' uses the request's connection");
          assert.equal(atEnd, before, "a statement in 'end' uses the request's connection");
          assert.equal(acquired.length, 1, 'one checkout for the whole request');
          await waitFor(() => db.stats().inUse === 0);
        } finally {
          await server.close();
        }
      });
    });
  });

  test(`${kind.name}: a leak warning names the request by method and path, not its query`, async () => {
    const logger = capturingLogger();
    const options = { leakDetectionThresholdMillis: 100, logger };
    await withDatabase(kind, options, async ({ db }) => {
      const server = await serve(
        withScope(db, async (_req, res) => {
          await db.get('SELECT 1 AS one');
          await sleep(200);
          res.end('ok');
        }),
      );
      try {
        assert.equal((await get(server.port, '/reports/7?token=secret')).status, 200);
        await waitFor(() => logger.warnings.length === 2);
        assert.match(logger.warnings[0]!, /GET \/reports\/7 has held a database connection/);
        assert.match(logger.warnings[1]!, /GET \/reports\/7 returned its database connection/);
        assert.doesNotMatch(logger.warnings.join('\n'), /secret/);
      } finally {
        await server.close();
      }
      // A Web request's URL is absolute: the warning leaves out its origin too.
      logger.warnings.length = 0;
      const scope = scopeForFetch(db, new Request('http://127.0.0.1:8080/reports/8?token=secret'))!;
      await scope.run(() => db.get('SELECT 1 AS one'));
      await waitFor(() => logger.warnings.length === 1);
      await scope.release();
      assert.match(
        logger.warnings[0]!,
        /db-hooks: GET \/reports\/8 has held a database connection/,
      );
      assert.doesNotMatch(logger.warnings.join('\n'), /secret|8080/);
    });
  });

  describe(`${kind.name}: scopeForFetch and releaseWhenRead`, () => {
    test('released when the request signal aborts, and at once if it already has', async () => {
      await withDatabase(kind, { max: 1 }, async ({ db }) => {
        const controller = new AbortController();
        const request = new Request('http://localhost/items?page=2', { signal: controller.signal });
        const scope = scopeForFetch(db, request)!;
        assert.equal(scopeForFetch(db, request), undefined, 'a second adapter steps aside');
        await scope.run(() => db.get('SELECT 1 AS one'));
        assert.equal(db.stats().inUse, 1);
        controller.abort();
        await waitFor(() => db.stats().inUse === 0);
        assert.equal(scope.released, true);
        await assert.rejects(
          scope.run(() => db.get('SELECT 1')),
          { reason: 'client-gone' },
        );

        const gone = new Request('http://localhost/x', { signal: AbortSignal.abort() });
        const late = scopeForFetch(db, gone)!;
        assert.equal(late.released, true);
        await assert.rejects(
          late.run(() => db.get('SELECT 1')),
          { reason: 'client-gone' },
        );
        assert.equal(db.stats().inUse, 0);
      });
    });

    test("a body produced from the database is read in the request's scope, then released", async () => {
      await withDatabase(kind, { max: 2 }, async (opened) => {
        const { db } = opened;
        const whoami = identify(opened);
        const acquired = recordAcquires(db);
        const scope = scopeForFetch(db, new Request('http://localhost/export'))!;
        const handlerConn = await scope.run(() => whoami());
        let pulls = 0;
        // The handler returns a streamed body: each chunk comes from a statement, run when the
        // client asks for more, after the handler returned.
        const rows = scope.run(
          () =>
            new ReadableStream<Uint8Array>({
              async pull(controller) {
                await sleep(5);
                const conn = await whoami();
                const same = conn === handlerConn ? 'same' : 'other';
                controller.enqueue(new TextEncoder().encode(`${same};`));
                if (++pulls === 3) controller.close();
              },
            }),
        );
        const body = releaseWhenRead(rows, scope);
        const text = await new Response(body).text();
        assert.equal(text, 'same;same;same;');
        assert.equal(acquired.length, 1);
        await waitFor(() => scope.released);
        assert.equal(db.stats().inUse, 0, 'released once the body was read');
        await assert.rejects(
          scope.run(() => db.get('SELECT 1')),
          { reason: 'done' },
        );

        // A client that stops reading: the scope is released as gone.
        const cut = scopeForFetch(db, new Request('http://localhost/export'))!;
        await cut.run(() => db.get('SELECT 1 AS one'));
        const endless = new ReadableStream<Uint8Array>({
          pull: (controller) => controller.enqueue(new Uint8Array([1])),
        });
        const reader = releaseWhenRead(endless, cut).getReader();
        await reader.read();
        await reader.cancel();
        await waitFor(() => cut.released);
        await assert.rejects(
          cut.run(() => db.get('SELECT 1')),
          { reason: 'client-gone' },
        );
        assert.equal(db.stats().inUse, 0);
      });
    });
  });
}
