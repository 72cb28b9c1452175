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

/** The soak routes on a bare (req, res) listener, given the generated `db`. */
export function routes(db) {
  return async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const user = /^\/users\/(\d+)$/.exec(url.pathname);
    try {
      if (req.method === 'GET' && user) return send(res, 200, await work.user(db, Number(user[1])));
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
    const { adapter, db } = await loadGenerated('node-http');
    listener = adapter.withDatabase(routes(db), db);
  } else {
    const driver = await baselineDriver();
    listener =
      driver.kind === 'postgres'
        ? async (req, res) => {
            let client;
            try {
              client = await checkoutFor(driver.pool, res);
            } catch (error) {
              return send(res, 503, { error: error.message });
            }
            try {
              const { rows } = await client.query(sql.user, [Number(req.url.split('/')[2])]);
              send(res, 200, rows[0]);
            } catch (error) {
              if (!res.headersSent) send(res, 500, { error: error.message });
            }
          }
        : (req, res) => send(res, 200, driver.user.get(Number(req.url.split('/')[2])));
  }
  listening(createServer(listener).listen(port, '127.0.0.1'));
}
