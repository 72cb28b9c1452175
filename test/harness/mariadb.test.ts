// The test MariaDB (test/support/mariadb.ts): on loopback, a database per test, run as a user
// other than root, stopped and started again on the same port, and gone without a trace.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { mysqlSkipReason } from '../runtime/databases.ts';
import {
  createMysqlTestDatabase,
  findMariadbBinaries,
  mysqlAdmin,
  startMariadb,
} from '../support/mariadb.ts';

const serverFolders = () => readdirSync(tmpdir()).filter((name) => name.startsWith('cdh-mysql-'));

test('mysql: each test gets its own database on a server that listens on loopback', {
  skip: mysqlSkipReason,
}, async () => {
  const a = await createMysqlTestDatabase();
  const b = await createMysqlTestDatabase();
  try {
    assert.notEqual(a.url, b.url);
    const row = await mysqlAdmin(a.url, async (conn) => {
      const [rows] = await conn.query('SELECT DATABASE() AS db, @@bind_address AS bound');
      return (rows as Array<{ db: string; bound: string }>)[0]!;
    });
    assert.equal(row.db, new URL(a.url).pathname.slice(1));
    if (!process.env.MYSQL_URL) assert.equal(row.bound, '127.0.0.1');
  } finally {
    await a.drop();
    await b.drop();
  }
});

test('mysql: a server of its own stops, starts again on its port, and leaves nothing behind', {
  skip:
    mysqlSkipReason ?? (findMariadbBinaries() ? undefined : 'no mariadbd here (MYSQL_URL only)'),
}, async () => {
  const before = serverFolders();
  const server = await startMariadb();
  const folder = serverFolders().find((name) => !before.includes(name))!;
  const dir = join(tmpdir(), folder);
  try {
    if (process.getuid?.() === 0) assert.notEqual(statSync(join(dir, 'data')).uid, 0);
    const version = () =>
      mysqlAdmin(server.url, async (conn) => {
        const [rows] = await conn.query('SELECT VERSION() AS v');
        return (rows as Array<{ v: string }>)[0]!.v;
      });
    assert.match(await version(), /MariaDB|^\d/);
    await server.shutdown();
    await assert.rejects(version(), { code: 'ECONNREFUSED' });
    await server.restart();
    assert.match(await version(), /MariaDB|^\d/);
  } finally {
    await server.stop();
  }
  assert.equal(existsSync(dir), false, `${dir} is still there`);
});
