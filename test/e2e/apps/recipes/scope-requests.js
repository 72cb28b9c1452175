import { requestScope } from './db/hooks.js';
import { database } from './scenarios.js';

/** The README's helper: runs every request of a server the framework made inside a scope. */
export function scopeRequests(server) {
  const listeners = server.listeners('request');
  server.removeAllListeners('request');
  for (const listener of listeners) server.on('request', requestScope(listener, { database }));
}
