// db.raw(), what the ORM bindings (--orm) run every statement through: rows and change count
// together, rows as arrays on request, pg's type parsers passed on, and the same connection
// rules as db.query() (a request's statements on its one connection, refused once released).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { createScope, ScopeReleasedError } from '../../src/runtime/runtime.ts';
import { mysqlSkipReason, openMysql, openPostgres, openSqlite } from './databases.ts';

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
