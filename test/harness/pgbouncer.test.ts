import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { pgbouncerPath, startPgBouncer } from '../support/pgbouncer.ts';
import { createTestDatabase } from '../support/postgres.ts';

test('the test PgBouncer pools transactions over fewer server connections', {
  skip: pgbouncerPath() ? false : 'pgbouncer is not installed (apt-get install pgbouncer)',
}, async () => {
  const database = await createTestDatabase();
  const bouncer = await startPgBouncer(database.url, { poolSize: 2 });
  const pool = new pg.Pool({ connectionString: bouncer.url, max: 10 });
  try {
    // Ten clients, each in a transaction that waits: PgBouncer serves them through two backends.
    const pids = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          const { rows } = await client.query<{ pid: number }>(
            'SELECT pg_backend_pid() AS pid, pg_sleep(0.05)',
          );
          await client.query('COMMIT');
          return rows[0]!.pid;
        } finally {
          client.release();
        }
      }),
    );
    assert.ok(new Set(pids).size <= 2, `expected at most 2 backends, saw ${new Set(pids).size}`);
  } finally {
    await pool.end();
    await bouncer.stop();
    await database.drop();
  }
});
