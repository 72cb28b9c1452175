/**
 * db-hooks driver for MySQL: db.stream()'s statement (runtime-stream), a result mysql2 reads
 * from the socket as the loop asks for rows, pausing the connection in between.
 *
 * MySQL cannot stop a result midway: its rows come until the last one. So a stream closed
 * early outside a transaction cuts its connection, and the server ends the query as its next
 * rows meet the closed socket; the pool opens a new connection for the next checkout. Inside a
 * transaction, which a cut would lose, the rest of the rows are read and dropped instead.
 */
import type { Connection, QueryValues } from 'mysql2';
import type { Params, RowCursor } from './runtime-driver.js';
import { DatabaseUnavailableError } from './runtime-errors.js';

/** What mysql2 keeps untyped: the server's last status flags, the socket. */
type Internals = { serverStatus?: number; stream?: { destroy(): void } };

export function mysqlCursor(
  conn: Connection,
  sql: string,
  params: Params | undefined,
  batchSize: number,
): RowCursor {
  const rows: unknown[] = [];
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const query = conn.query({ sql, values: params as QueryValues });
  query.on('result', (row: unknown) => {
    if (!Array.isArray(row) && typeof row === 'object' && row !== null && 'affectedRows' in row) {
      return; // a statement's OK packet, not a row
    }
    rows.push(row);
    if (rows.length >= batchSize) conn.pause();
    wake?.();
  });
  const finish = (error?: unknown) => {
    failure ??= error;
    ended = true;
    conn.off('error', finish);
    wake?.();
  };
  query.on('error', finish);
  query.on('end', () => finish());
  // A lost connection tells the connection, not a query without a callback.
  conn.on('error', finish);
  return {
    async read() {
      while (rows.length < batchSize && !ended) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
      if (failure !== undefined) {
        const fatal = (failure as { fatal?: boolean }).fatal === true;
        throw fatal ? new DatabaseUnavailableError({ cause: failure }) : (failure as Error);
      }
      const batch = rows.splice(0, batchSize);
      conn.resume();
      return batch;
    },
    async close() {
      if (ended) return;
      const internals = conn as unknown as Internals;
      if (((internals.serverStatus ?? 0) & 1) === 0) {
        // SERVER_STATUS_IN_TRANS unset: nothing to lose. The pool discards a cut connection.
        ended = true;
        internals.stream?.destroy();
        return;
      }
      rows.length = 0;
      batchSize = Number.POSITIVE_INFINITY; // read the rest, keep nothing
      query.removeAllListeners('result');
      conn.resume();
      while (!ended) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },
  };
}
