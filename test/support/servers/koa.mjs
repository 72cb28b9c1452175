import Koa from 'koa';
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

const app = new Koa();
const route = (method, pattern, handler) => async (ctx, next) => {
  const match = ctx.method === method && pattern.exec(ctx.path);
  if (!match) return next();
  ctx.body = await handler(ctx, match);
};
app.use(async (ctx, next) => {
  try {
    await next();
  } catch (error) {
    ctx.status = error.status ?? 500;
    ctx.body = { error: error.message };
  }
});

if (mode === 'generated') {
  const { adapter, db, adapterOptions } = await loadGenerated('koa');
  app.use(adapter.dbHooks(adapterOptions));
  app.use(route('GET', /^\/users\/(\d+)$/, (_ctx, m) => db.get(sql.user, [Number(m[1])])));
  app.use(route('GET', /^\/fail$/, () => work.fail()));
  app.use(route('GET', /^\/slow$/, (ctx) => work.slow(db, Number(ctx.query.ms ?? 50))));
  app.use(route('POST', /^\/transfer$/, () => work.transfer(db)));
  app.use(route('GET', /^\/__stats$/, () => work.stats(db)));
} else {
  const driver = await baselineDriver();
  if (driver.kind === 'pool') {
    app.use(async (ctx, next) => {
      ctx.state.client = await checkoutFor(driver.pool, ctx.res);
      await next();
    });
    app.use(
      route('GET', /^\/users\/(\d+)$/, async (ctx, m) => {
        const { rows } = await ctx.state.client.query(sql.user, [Number(m[1])]);
        return rows[0];
      }),
    );
  } else {
    app.use(route('GET', /^\/users\/(\d+)$/, (_ctx, m) => driver.user.get(Number(m[1]))));
  }
}

listening(app.listen(port, '127.0.0.1'));
