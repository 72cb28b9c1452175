// The README's Hapi recipe for the Flask-style hooks, as a test app.
import { Readable } from 'node:stream';
import Hapi from '@hapi/hapi';
import { beforeRequest, teardownRequest } from './db/hooks.js';
import * as s from './scenarios.js';
import { scopeRequests } from './scope-requests.js';

const server = Hapi.server({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
scopeRequests(server.listener);
server.ext('onRequest', async (_request, h) => {
  try {
    await beforeRequest(s.database);
  } catch (error) {
    // Hapi answers 500 for errors that are not Boom errors: keep the pool's 503.
    if (error.status === 503) return h.response(error.message).code(503).takeover();
    throw error;
  }
  return h.continue;
});
// 'response' comes once the response was sent or the client went away.
server.events.on('response', (request) => {
  const error = request.response instanceof Error ? request.response : undefined;
  teardownRequest(error, s.database).catch((failure) => console.error(failure));
});

server.route([
  { method: 'GET', path: '/__stats', handler: () => s.stats() },
  { method: 'GET', path: '/__events/{tag}', handler: (request) => s.eventsOf(request.params.tag) },
  {
    method: 'GET',
    path: '/users/{id}',
    handler: async (request, h) => {
      const user = await s.getUser(request.params.id);
      return user ?? h.response({ error: 'not found' }).code(404);
    },
  },
  {
    method: 'POST',
    path: '/users',
    handler: async (request, h) => h.response(await s.addUser(request.payload.name)).code(201),
  },
  { method: 'GET', path: '/boom/sync', handler: () => s.failNow() },
  { method: 'GET', path: '/boom/async', handler: () => s.failAfterQuery() },
  { method: 'GET', path: '/slow', handler: (request) => s.slow(request.url.href) },
  {
    method: 'GET',
    path: '/stream',
    handler: (request, h) =>
      h
        .response(Readable.from(s.chunks(request.url.href), { objectMode: false }))
        .type('text/plain'),
  },
]);

s.setup()
  .then(() => server.start())
  .then(() => {
    s.listening(server.listener);
    s.shutdownOn(() => server.stop());
  })
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
