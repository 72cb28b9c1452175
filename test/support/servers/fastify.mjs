import Fastify from 'fastify';
import {
  baselineDriver,
  checkoutFor,
  listening,
  loadGenerated,
  mode,
  poolMax,
  port,
  sql,
  summary,
  work,
} from './common.mjs';

const app = Fastify();

if (mode === 'generated') {
  const { adapter, db, adapterOptions } = await loadGenerated('fastify');
  await app.register(adapter.dbHooks, adapterOptions);
  app.get('/users/:id', async (req) => db.get(sql.user, [Number(req.params.id)]));
  app.get('/users/:id/summary', async (req) =>
    summary((text, params) => db.query(text, params), Number(req.params.id)),
  );
  app.get('/fail', async () => work.fail());
  app.get('/slow', async (req) => work.slow(db, Number(req.query.ms ?? 50)));
  app.post('/transfer', async () => work.transfer(db));
  app.get('/__stats', async () => work.stats(db));
} else if (mode === 'fastify-postgres') {
  // The official plugin, used the way its README shows first: `app.pg.query`, a checkout of
  // the plugin's pool per statement.
  const { default: fastifyPostgres } = await import('@fastify/postgres');
  await app.register(fastifyPostgres, { connectionString: process.env.DATABASE_URL, max: poolMax });
  const query = async (text, params) => (await app.pg.query(text, params)).rows;
  app.get('/users/:id', async (req) => (await query(sql.user, [Number(req.params.id)]))[0]);
  app.get('/users/:id/summary', async (req) => summary(query, Number(req.params.id)));
} else {
  const driver = await baselineDriver();
  if (driver.kind === 'pool') {
    app.addHook('onRequest', async (req, reply) => {
      // onResponse does not run for aborted requests; the response's 'close' event does, every
      // time. (The request's own 'close' comes as soon as its body was read: too early.)
      req.client = await checkoutFor(driver.pool, reply.raw);
    });
    app.get('/users/:id', async (req) => {
      const { rows } = await req.client.query(sql.user, [Number(req.params.id)]);
      return rows[0];
    });
    app.get('/users/:id/summary', async (req) =>
      summary(
        async (text, params) => (await req.client.query(text, params)).rows,
        Number(req.params.id),
      ),
    );
  } else {
    app.get('/users/:id', async (req) => driver.user.get(Number(req.params.id)));
  }
}

await app.listen({ port, host: '127.0.0.1' });
listening(app.server);
