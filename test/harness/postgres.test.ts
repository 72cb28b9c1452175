import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { createTestDatabase } from '../support/postgres.ts';

test('the test PostgreSQL answers on loopback and gives each test its own database', async () => {
  const a = await createTestDatabase();
  const b = await createTestDatabase();
  try {
    assert.notEqual(a.url, b.url);
    const client = new pg.Client({ connectionString: a.url });
    await client.connect();
    const { rows } = await client.query<{ db: string; addr: string | null }>(
      'SELECT current_database() AS db, inet_server_addr()::text AS addr',
    );
    await client.end();
    assert.equal(rows[0]!.db, new URL(a.url).pathname.slice(1));
    assert.match(rows[0]!.addr ?? '', /^127\.0\.0\.1/);
  } finally {
    await a.drop();
    await b.drop();
  }
});
