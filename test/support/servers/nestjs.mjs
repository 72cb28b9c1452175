// NestJS (on @nestjs/platform-express) with the generated DbHooksModule, for the load tests:
// MODE=generated only. Nest's decorators are applied as the functions they are (plain JavaScript).
import { Controller, Get, HttpCode, Module, Post, Req } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { listening, loadGenerated, mode, port, sql, work } from './common.mjs';

if (mode !== 'generated') throw new Error(`nestjs.mjs runs MODE=generated only, not ${mode}`);
const { adapter, db, adapterOptions } = await loadGenerated('nestjs');

class LoadController {
  user(req) {
    return db.get(sql.user, [Number(req.params.id)]);
  }
  fail() {
    return work.fail();
  }
  slow(req) {
    return work.slow(db, Number(req.query.ms ?? 50));
  }
  transfer() {
    return work.transfer(db);
  }
  stats() {
    return work.stats(db);
  }
}

const routes = {
  user: [Get('users/:id')],
  fail: [Get('fail')],
  slow: [Get('slow')],
  // The other servers answer the transfer with 200; Nest's default for a POST is 201.
  transfer: [Post('transfer'), HttpCode(200)],
  stats: [Get('__stats')],
};
for (const [name, decorators] of Object.entries(routes)) {
  const prototype = LoadController.prototype;
  for (const decorate of decorators) {
    decorate(prototype, name, Object.getOwnPropertyDescriptor(prototype, name));
  }
  Req()(prototype, name, 0);
}
Controller()(LoadController);

class LoadModule {}
Module({
  imports: [adapter.DbHooksModule.forRoot(adapterOptions)],
  controllers: [LoadController],
})(LoadModule);

// No logger: the load sends handler errors on purpose, and Nest would log each one.
const app = await NestFactory.create(LoadModule, { logger: false });
await app.listen(port, '127.0.0.1');
listening(app.getHttpServer());
