/**
 * db-hooks driver for PostgreSQL: db.stream()'s statement (runtime-stream), a cursor made with
 * pg-cursor (by pg's author): a portal on the server, read `batchSize` rows per round trip, so
 * the rows wait on the server until the loop asks for them. Closing it closes the portal (and
 * its query) and leaves the connection as it was, inside a transaction or not.
 */
import type { Client } from 'pg';
import Cursor from 'pg-cursor';
import type { RowCursor } from './runtime-driver.js';

export function pgCursor(
  client: Client,
  sql: string,
  values: unknown[] | undefined,
  batchSize: number,
  /** What a failure becomes (a lost connection: DatabaseUnavailableError). */
  failure: (error: unknown) => Error,
  /** Clients whose connection was lost. */
  broken: WeakSet<Client>,
): RowCursor {
  const cursor = client.query(new Cursor(sql, values));
  const fail = (error: unknown): never => {
    throw failure(error);
  };
  return {
    read: () => cursor.read(batchSize).catch(fail),
    // A lost connection has no portal left, and would never answer the close.
    close: () => (broken.has(client) ? undefined : cursor.close().catch(fail)),
  };
}
