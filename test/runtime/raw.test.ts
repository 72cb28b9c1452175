// db.raw(), what the ORM bindings (--orm) run every statement through: rows and change count
// together, rows as arrays on request, pg's type parsers passed on, the columns and their types
// on request (what Prisma converts values by), and the same connection rules as db.query() (a
// request's statements on its one connection, refused once released).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { createScope, ScopeReleasedError } from '../../src/runtime/runtime.ts';
import {
  mysqlSkipReason,
  openMysql,
  openPostgres,
  openSqlite,
  sqliteDrivers,
} from './databases.ts';

test('sqlite: rows, changes and the rowid; arrays on request, only for that call', async () => {
  const { db, cleanup } = await openSqlite();
  try {
    await db.run('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)');
    const inserted = await db.raw('INSERT INTO t (name) VALUES (?), (?)', ['a', 'b']);
    assert.deepEqual(inserted, { rows: [], changes: 2, lastInsertId: 2 });
    const returning = await db.raw('INSERT INTO t (name) VALUES (?) RETURNING id', ['c']);
    assert.deepEqual(returning, { rows: [{ id: 3 }] }); // a statement with rows: no count
    const select = 'SELECT a.id, b.id FROM t a JOIN t b ON a.id = b.id WHERE a.id = ?';
    assert.deepEqual(await db.raw(select, [1], { rowMode: 'array' }), { rows: [[1, 1]] });
    // The prepared statement is cached and shared: db.get() still gets an object.
    assert.deepEqual(await db.get(select, [1]), { id: 1 });
  } finally {
    await cleanup();
  }
});

// What a Prisma driver adapter converts values by: each column's name and its declared type
// (SQLite has no other), null for an expression; nothing for a statement that returns no rows.
for (const driver of sqliteDrivers) {
  test(`sqlite (${driver}): columns on request, with their declared types`, async () => {
    const { db, cleanup } = await openSqlite({ driver });
    try {
      await db.run('CREATE TABLE t (id INTEGER PRIMARY KEY, at DATETIME, n)');
      const insert = 'INSERT INTO t (at, n) VALUES (?, ?)';
      assert.deepEqual(await db.raw(insert, ['2026-01-02', 1.5], { columns: true }), {
        rows: [],
        changes: 1,
        lastInsertId: 1,
        columns: [],
      });
      const select = 'SELECT id, at AS "when", n, 1 + 1 AS two FROM t';
      assert.deepEqual(await db.raw(select, [], { rowMode: 'array', columns: true }), {
        rows: [[1, '2026-01-02', 1.5, 2]],
        columns: [
          { name: 'id', type: 'INTEGER' },
          { name: 'when', type: 'DATETIME' },
          { name: 'n', type: null },
          { name: 'two', type: null },
        ],
      });
      // Only when asked: the cached statement gives db.raw() its plain shape again.
      assert.deepEqual(await db.raw(select), {
        rows: [{ id: 1, when: '2026-01-02', n: 1.5, two: 2 }],
      });
    } finally {
      await cleanup();
    }
  });
}

test('postgres: columns on request, with their type OIDs', async () => {
  const { db, cleanup } = await openPostgres();
  try {
    await db.run('CREATE TABLE t (id serial PRIMARY KEY, at timestamptz NOT NULL)');
    const inserted = await db.raw('INSERT INTO t (at) VALUES (now())', [], { columns: true });
    assert.deepEqual(inserted, { rows: [], changes: 1, columns: [] });
    const result = await db.raw('SELECT id, at, $1::text AS s FROM t', ['x'], {
      rowMode: 'array',
      columns: true,
    });
    const { INT4, TIMESTAMPTZ, TEXT } = pg.types.builtins;
    assert.deepEqual(result.columns, [
      { name: 'id', type: INT4 },
      { name: 'at', type: TIMESTAMPTZ },
      { name: 's', type: TEXT },
    ]);
    assert.equal((await db.raw('SELECT 1 AS one')).columns, undefined);
  } finally {
    await cleanup();
  }
});

test('postgres: rows and rowCount, arrays, the caller type parsers, one connection per request', async () => {
  const { db, cleanup } = await openPostgres();
  try {
    await db.run('CREATE TABLE t (id serial PRIMARY KEY, at timestamp NOT NULL)');
    const inserted = await db.raw('INSERT INTO t (at) VALUES ($1), ($1)', ['2026-01-02 03:04:05']);
    assert.deepEqual(inserted, { rows: [], changes: 2 });
    const asText = (typeId: number, format?: 'text' | 'binary') =>
      typeId === pg.types.builtins.TIMESTAMP
        ? (value: string) => value
        : pg.types.getTypeParser(typeId, format);
    const rows = await db.raw('SELECT id, at FROM t ORDER BY id LIMIT 1', undefined, {
      rowMode: 'array',
      types: { getTypeParser: asText },
    });
    assert.deepEqual(rows, { rows: [[1, '2026-01-02 03:04:05']], changes: 1 });

    const scope = createScope(db);
    const [a, b] = await scope.run(() =>
      Promise.all([
        db.raw<{ pid: number }>('SELECT pg_backend_pid() AS pid'),
        db.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'),
      ]),
    );
    assert.equal(a.rows[0]!.pid, b!.pid);
    await scope.release('client-gone');
    await assert.rejects(
      scope.run(() => db.raw('SELECT 1')),
      (error) => error instanceof ScopeReleasedError && error.reason === 'client-gone',
    );
    assert.equal(db.stats().inUse, 0);
  } finally {
    await cleanup();
  }
});

test('mysql: rows, affectedRows and the first insertId; arrays on request; one connection per request', {
  skip: mysqlSkipReason,
}, async () => {
  const { db, cleanup } = await openMysql();
  try {
    await db.run('CREATE TABLE t (id int AUTO_INCREMENT PRIMARY KEY, name text NOT NULL)');
    const inserted = await db.raw('INSERT INTO t (name) VALUES (?), (?)', ['a', 'b']);
    // Several rows: the first one's id, as LAST_INSERT_ID() gives it.
    assert.deepEqual(inserted, { rows: [], changes: 2, lastInsertId: 1 });
    assert.deepEqual(await db.run('UPDATE t SET name = ? WHERE id > ?', ['c', 0]), { changes: 2 });
    const select = 'SELECT a.id, b.id FROM t a JOIN t b ON a.id = b.id WHERE a.id = ?';
    assert.deepEqual(await db.raw(select, [1], { rowMode: 'array' }), { rows: [[1, 1]] });
    assert.deepEqual(await db.get(select, [1]), { id: 1 });

    const scope = createScope(db);
    const [a, b] = await scope.run(() =>
      Promise.all([
        db.raw<{ id: number }>('SELECT CONNECTION_ID() AS id'),
        db.get<{ id: number }>('SELECT CONNECTION_ID() AS id'),
      ]),
    );
    assert.equal(a.rows[0]!.id, b!.id);
    await scope.release('client-gone');
    await assert.rejects(
      scope.run(() => db.raw('SELECT 1')),
      (error) => error instanceof ScopeReleasedError && error.reason === 'client-gone',
    );
    assert.equal(db.stats().inUse, 0);
  } finally {
    await cleanup();
  }
});
