// A node:http server whose requests each run one piece of work through enterRequest(), for the
// tests that check what one request leaves on a connection for the next.
import http from 'node:http';
import type { Database } from '../../src/runtime/runtime.ts';
import { enterRequest } from '../../src/runtime/runtime-node.ts';

export interface Server {
  /** Runs fn as the handler of one real HTTP request, inside the request's scope. */
  inRequest<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** A node:http server whose requests run, through enterRequest(), the work registered for them. */
export async function serve(database: Database<any>): Promise<Server> {
  const work = new Map<string, () => Promise<unknown>>();
  let next = 0;
  const server = http.createServer((req, res) => {
    const fn = work.get(req.url!.slice(1))!;
    enterRequest(req, res, { database }, async () => {
      const result = await fn();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(result ?? null));
    }).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(JSON.stringify({ error: String(error) }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    async inRequest<T>(fn: () => Promise<T>): Promise<T> {
      const id = String(next++);
      work.set(id, fn);
      try {
        const reply = await fetch(`http://127.0.0.1:${port}/${id}`);
        const body = (await reply.json()) as T & { error?: string };
        if (reply.status !== 200) throw new Error(`request failed: ${body.error}`);
        return body;
      } finally {
        work.delete(id);
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
