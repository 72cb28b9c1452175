import { createServer } from 'node:http';
import { listening, loadGenerated, port } from './common.mjs';
import { routes } from './node-http.mjs';

// The Flask-style pair around a plain listener, as a framework's before/after hooks would call it.
const { adapter, db, adapterOptions } = await loadGenerated('hooks');
const handle = routes(db);
const app = async (req, res) => {
  try {
    await adapter.beforeRequest(db);
  } catch (error) {
    res.writeHead(error.status ?? 500).end(error.message);
    return;
  }
  res.once('finish', () => void adapter.teardownRequest(undefined, db));
  await handle(req, res);
};

listening(createServer(adapter.requestScope(app, adapterOptions)).listen(port, '127.0.0.1'));
