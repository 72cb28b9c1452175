import express from 'express';
import {
  baselineDriver,
  checkoutFor,
  listening,
  loadGenerated,
  mode,
  port,
  sql,
  summary,
  work,
} from './common.mjs';

const app = express();
app.use(express.json());

if (mode === 'generated') {
  const { adapter, db, adapterOptions } = await loadGenerated('express');
  app.use(adapter.dbHooks(adapterOptions));
  app.get('/users/:id', async (req, res) =>
    res.json(await db.get(sql.user, [Number(req.params.id)])),
  );
  app.get('/users/:id/summary', async (req, res) =>
    res.json(await summary((text, params) => db.query(text, params), Number(req.params.id))),
  );
  app.get('/fail', async () => work.fail());
  app.get('/slow', async (req, res) => res.json(await work.slow(db, Number(req.query.ms ?? 50))));
  app.post('/transfer', async (_req, res) => res.json(await work.transfer(db)));
  app.get('/__stats', (_req, res) => res.json(work.stats(db)));
} else if (mode === 'pool-query') {
  // pg's `pool.query` per statement: a checkout and release of the pool for each.
  const { pool } = await baselineDriver();
  const query = async (text, params) => (await pool.query(text, params)).rows;
  app.get('/users/:id', async (req, res) =>
    res.json((await query(sql.user, [Number(req.params.id)]))[0]),
  );
  app.get('/users/:id/summary', async (req, res) =>
    res.json(await summary(query, Number(req.params.id))),
  );
} else {
  // What a careful person writes by hand: check out on arrival, release once the response closes.
  const driver = await baselineDriver();
  if (driver.kind === 'pool') {
    app.use(async (req, res, next) => {
      try {
        req.client = await checkoutFor(driver.pool, res);
      } catch (error) {
        return next(error);
      }
      next();
    });
    app.get('/users/:id', async (req, res) => {
      const { rows } = await req.client.query(sql.user, [Number(req.params.id)]);
      res.json(rows[0]);
    });
    app.get('/users/:id/summary', async (req, res) => {
      const query = async (text, params) => (await req.client.query(text, params)).rows;
      res.json(await summary(query, Number(req.params.id)));
    });
  } else {
    app.get('/users/:id', (req, res) => res.json(driver.user.get(Number(req.params.id))));
  }
}

app.use((error, _req, res, _next) => {
  res.status(error.status ?? error.statusCode ?? 500).json({ error: error.message });
});
listening(app.listen(port, '127.0.0.1'));
