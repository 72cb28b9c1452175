// The README's Restify recipe for the Flask-style hooks, as a test app.
import { pipeline, Readable } from 'node:stream';
import restify from 'restify';
import { beforeRequest, teardownRequest } from './db/hooks.js';
import * as s from './scenarios.js';
import { scopeRequests } from './scope-requests.js';

const server = restify.createServer();
scopeRequests(server.server);
server.pre((_req, res, next) => {
  beforeRequest(s.database).then(
    () => next(),
    (error) => {
      if (error.status !== 503) return next(error);
      // Restify would send the error's own fields without its message: send both.
      res.send(503, { code: error.code, message: error.message });
      next(false);
    },
  );
});
server.on('after', (_req, _res, _route, error) => {
  teardownRequest(error, s.database).catch((failure) => console.error(failure));
});
server.use(restify.plugins.queryParser());
server.use(restify.plugins.bodyParser());

server.get('/__stats', async (_req, res) => {
  res.send(s.stats());
});
server.get('/__events/:tag', async (req, res) => {
  res.send(s.eventsOf(req.params.tag));
});
server.get('/users/:id', async (req, res) => {
  const user = await s.getUser(req.params.id);
  if (user) res.send(user);
  else res.send(404, { error: 'not found' });
});
server.post('/users', async (req, res) => {
  res.send(201, await s.addUser(req.body.name));
});
// Restify does not catch a handler's synchronous throw (the process would exit): pass it on.
server.get('/boom/sync', (_req, _res, next) => {
  try {
    s.failNow();
  } catch (error) {
    next(error);
  }
});
server.get('/boom/async', async () => s.failAfterQuery());
server.get('/slow', async (req, res) => {
  res.send(await s.slow(req.url));
});
server.get('/stream', (req, res, next) => {
  res.setHeader('content-type', 'text/plain');
  res.writeHead(200);
  // pipeline(), not pipe(): a stream cut short by the client must not crash the process.
  pipeline(Readable.from(s.chunks(req.url)), res, () => next());
});

s.setup()
  .then(() => {
    server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => s.listening(server.server));
    s.shutdownOn(() => new Promise((resolve) => server.close(() => resolve())));
  })
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
