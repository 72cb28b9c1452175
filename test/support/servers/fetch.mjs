import { serve } from '@hono/node-server';
import { listening, loadGenerated, port, sql, work } from './common.mjs';

const json = (body, status = 200) => Response.json(body ?? null, { status });

const { adapter, db, adapterOptions } = await loadGenerated('fetch');
const handler = adapter.withDatabase(async (request) => {
  const url = new URL(request.url);
  const user = /^\/users\/(\d+)$/.exec(url.pathname);
  try {
    if (request.method === 'GET' && user) return json(await db.get(sql.user, [Number(user[1])]));
    if (url.pathname === '/fail') return json(await work.fail());
    if (url.pathname === '/slow') {
      return json(await work.slow(db, Number(url.searchParams.get('ms') ?? 50)));
    }
    if (request.method === 'POST' && url.pathname === '/transfer') {
      return json(await work.transfer(db));
    }
    if (url.pathname === '/__stats') return json(work.stats(db));
    return json({ error: 'not found' }, 404);
  } catch (error) {
    return json({ error: error.message }, error.status ?? 500);
  }
}, adapterOptions);

listening(serve({ fetch: handler, port, hostname: '127.0.0.1' }));
