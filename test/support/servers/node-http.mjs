import { createServer } from 'node:http';
import {
  baselineDriver,
  checkoutFor,
  listening,
  loadGenerated,
  mode,
  port,
  sql,
  work,
} from './common.mjs';

function send(res, status, body) {
  const text = JSON.stringify(body ?? null);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** GET /users/:id's id, matched on the raw URL the same way by the generated and baseline servers. */
const userId = (req) => {
  const match = req.method === 'GET' && /^\/users\/(\d+)$/.exec(req.url);
  return match ? Number(match[1]) : undefined;
};

/** The benchmarked route and the soak routes on a bare (req, res) listener, given the generated `db`. */
export function routes(db) {
  return async (req, res) => {
    try {
      const id = userId(req);
      if (id !== undefined) return send(res, 200, await db.get(sql.user, [id]));
      const url = new URL(req.url, 'http://localhost');
      if (url.pathname === '/fail') return send(res, 200, await work.fail());
      if (url.pathname === '/slow') {
        return send(res, 200, await work.slow(db, Number(url.searchParams.get('ms') ?? 50)));
      }
      if (req.method === 'POST' && url.pathname === '/transfer') {
        return send(res, 200, await work.transfer(db));
      }
      if (url.pathname === '/__stats') return send(res, 200, work.stats(db));
      send(res, 404, { error: 'not found' });
    } catch (error) {
      if (!res.headersSent) send(res, error.status ?? 500, { error: error.message });
    }
  };
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  let listener;
  if (mode === 'generated') {
    const { adapter, db, adapterOptions } = await loadGenerated('node-http');
    listener = adapter.withDatabase(routes(db), adapterOptions);
  } else {
    const driver = await baselineDriver();
    listener =
      driver.kind === 'pool'
        ? async (req, res) => {
            const id = userId(req);
            if (id === undefined) return send(res, 404, { error: 'not found' });
            let client;
            try {
              client = await checkoutFor(driver.pool, res);
            } catch (error) {
              return send(res, 503, { error: error.message });
            }
            try {
              const { rows } = await client.query(sql.user, [id]);
              send(res, 200, rows[0]);
            } catch (error) {
              if (!res.headersSent) send(res, 500, { error: error.message });
            }
          }
        : (req, res) => {
            const id = userId(req);
            if (id === undefined) return send(res, 404, { error: 'not found' });
            send(res, 200, driver.user.get(id));
          };
  }
  listening(createServer(listener).listen(port, '127.0.0.1'));
}
