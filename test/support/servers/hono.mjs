import { serve } from '@hono/node-server';
import { Hono } from 'hono';
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

const app = new Hono();
app.onError((error, c) => c.json({ error: error.message }, error.status ?? 500));

if (mode === 'generated') {
  const { adapter, db, adapterOptions } = await loadGenerated('hono');
  app.use(adapter.dbHooks(adapterOptions));
  app.get('/users/:id', async (c) => c.json(await db.get(sql.user, [Number(c.req.param('id'))])));
  app.get('/fail', async () => work.fail());
  app.get('/slow', async (c) => c.json(await work.slow(db, Number(c.req.query('ms') ?? 50))));
  app.post('/transfer', async (c) => c.json(await work.transfer(db)));
  app.get('/__stats', (c) => c.json(work.stats(db)));
} else {
  const driver = await baselineDriver();
  if (driver.kind === 'pool') {
    app.use(async (c, next) => {
      // The node response's 'close' fires once the body is sent or the client went away.
      c.set('client', await checkoutFor(driver.pool, c.env.outgoing));
      await next();
    });
    app.get('/users/:id', async (c) => {
      const { rows } = await c.get('client').query(sql.user, [Number(c.req.param('id'))]);
      return c.json(rows[0]);
    });
  } else {
    app.get('/users/:id', (c) => c.json(driver.user.get(Number(c.req.param('id')))));
  }
}

listening(serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }));
