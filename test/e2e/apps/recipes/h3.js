// The README's h3 (2.x) recipe for the Flask-style hooks, as a test app.
import { createServer } from 'node:http';
import { H3, HTTPError, onDispose } from 'h3';
import { toNodeHandler } from 'h3/node';
import { beforeRequest, requestScope, teardownRequest } from './db/hooks.js';
import * as s from './scenarios.js';

const app = new H3({
  onRequest: async (event) => {
    try {
      await beforeRequest(s.database);
    } catch (error) {
      // h3 hides the message of errors it does not know: keep the pool's 503 and message.
      if (error.status === 503) throw new HTTPError(error.message, { status: 503, cause: error });
      throw error;
    }
    // Once h3 is done with the event: body sent, client gone, or failed.
    onDispose(event, (reason) => teardownRequest(reason, s.database));
  },
});

app.get('/__stats', () => s.stats());
app.get('/__events/:tag', (event) => s.eventsOf(event.context.params.tag));
app.get('/users/:id', async (event) => {
  const user = await s.getUser(event.context.params.id);
  return user ?? Response.json({ error: 'not found' }, { status: 404 });
});
app.post('/users', async (event) => {
  const { name } = await event.req.json();
  return Response.json(await s.addUser(name), { status: 201 });
});
app.get('/boom/sync', () => s.failNow());
app.get('/boom/async', () => s.failAfterQuery());
app.get('/slow', (event) => s.slow(event.req.url));
app.get('/stream', (event) => {
  return new Response(s.webStream(s.chunks(event.req.url)), {
    headers: { 'content-type': 'text/plain' },
  });
});

const server = createServer(requestScope(toNodeHandler(app), { database: s.database }));
s.setup()
  .then(() => {
    server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => s.listening(server));
    s.shutdownOn(s.closeServer(server));
  })
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
