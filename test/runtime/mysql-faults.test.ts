// MySQL (MariaDB) faults: a KILLed connection or a lost server must not crash the process; the
// request gets DatabaseUnavailableError (503, nothing about the server in its message, the
// driver's detail logged), its connection is discarded, and the pool serves again once the
// server is back. Ordinary SQL errors keep the connection. These tests run on a server of their
// own, which they stop and start.
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  createScope,
  DatabaseUnavailableError,
  PoolTimeoutError,
  ServiceUnavailableError,
} from '../../src/runtime/runtime.ts';
import { MysqlDatabase, type MysqlOptions } from '../../src/runtime/runtime-mysql.ts';
import { mysqlAdmin, type RunningMariadb, startMariadb } from '../support/mariadb.ts';
import { freePort } from '../support/postgres.ts';
import {
  capturingLogger,
  countReleases,
  mysqlSessions,
  mysqlSkipReason,
  recordAcquires,
  waitFor,
} from './databases.ts';

const CLIENT_MESSAGE = 'The database is unavailable. Try again shortly.';

function kill(url: string, id: number): Promise<unknown> {
  return mysqlAdmin(url, (conn) => conn.query(`KILL ${id}`));
}

/** The ids of the connections running `SELECT SLEEP(...)` on the server. */
async function sleeping(url: string): Promise<number[]> {
  return mysqlAdmin(url, async (conn) => {
    const [rows] = await conn.query(
      "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'",
    );
    return (rows as Array<{ id: number }>).map((row) => Number(row.id));
  });
}

const connectionId = async (db: MysqlDatabase) =>
  (await db.get<{ id: number }>('SELECT CONNECTION_ID() AS id'))!.id;

describe('mysql: faults', { skip: mysqlSkipReason }, () => {
  let server: RunningMariadb;
  let url: string;
  const opened: MysqlDatabase[] = [];
  const crashes: unknown[] = [];
  const onCrash = (error: unknown) => crashes.push(error);

  function open(options: MysqlOptions = {}): MysqlDatabase {
    const db = new MysqlDatabase({ uri: url, max: 2, acquireTimeoutMillis: 10_000, ...options });
    opened.push(db);
    return db;
  }

  before(async () => {
    server = await startMariadb();
    await mysqlAdmin(server.url, (conn) => conn.query('CREATE DATABASE faults'));
    url = server.url.replace(/\/mysql$/, '/faults');
    process.on('uncaughtException', onCrash);
  });

  after(async () => {
    process.off('uncaughtException', onCrash);
    for (const db of opened) await db.closePool();
    await server?.stop();
    assert.deepEqual(crashes, []);
  });

  test('a connection KILLed between two statements: 503, discarded, a new one serves', async () => {
    const logger = capturingLogger();
    const db = open({ logger });
    const releases = countReleases(db);
    const scope = createScope(db);
    const first = await scope.run(() => connectionId(db));
    await kill(url, first);
    await assert.rejects(
      scope.run(() => db.get('SELECT 1')),
      (error: Error) => {
        assert.ok(error instanceof DatabaseUnavailableError);
        assert.equal(error.message, CLIENT_MESSAGE);
        return true;
      },
    );
    await scope.release();
    assert.deepEqual(releases, { count: 1, discarded: 1 });
    assert.ok(logger.errors.some((line) => /lost the MySQL connection/.test(line)));
    const second = await connectionId(db);
    assert.notEqual(second, first);
    assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
  });

  test('a connection KILLed during a statement: that statement rejects with DatabaseUnavailableError', async () => {
    const db = open({ logger: capturingLogger() });
    const scope = createScope(db);
    const first = await scope.run(() => connectionId(db));
    const slow = scope.run(() => db.get('SELECT SLEEP(30)'));
    const outcome = slow.then(
      () => 'resolved',
      (error) => error,
    );
    await waitFor(async () => (await sleeping(url)).includes(first), 10_000);
    await kill(url, first);
    assert.ok((await outcome) instanceof DatabaseUnavailableError);
    await scope.release();
    assert.equal(db.stats().inUse, 0);
    assert.notEqual(await connectionId(db), first);
  });

  test('an idle connection KILLed is dropped at checkout: the next request never sees it', async () => {
    const db = open();
    const acquired = recordAcquires(db);
    const first = await connectionId(db);
    await kill(url, first);
    // The socket's end reaches mysql2 after KILL returns: wait for the connection to know it.
    const driver = (db as any).driver;
    await waitFor(() => driver.isBroken(acquired[0]), 10_000);
    const second = await connectionId(db);
    assert.notEqual(second, first);
    assert.deepEqual(db.stats(), { total: 1, idle: 1, inUse: 0, waiting: 0 });
  });

  test('an SQL error keeps the connection, inside a transaction too', async () => {
    const db = open({ max: 1 });
    const releases = countReleases(db);
    const first = await connectionId(db);
    await assert.rejects(db.get('SELECT * FROM no_such_table'), /no_such_table/);
    await assert.rejects(
      db.atomic(async () => {
        await db.get('SELECT 1');
        await db.get('SELEC 1');
      }),
      { code: 'ER_PARSE_ERROR' },
    );
    assert.equal(await connectionId(db), first);
    assert.equal(releases.discarded, 0);
  });

  test('server stopped mid-load: 503s, no crash; restarted: 200s, no connection left over', async () => {
    const logger = capturingLogger();
    const db = open({ max: 4, logger, acquireTimeoutMillis: 10_000 });
    await db.run('CREATE TABLE IF NOT EXISTS hits (v int)');
    const request = async (i: number) => {
      const scope = createScope(db);
      try {
        return await scope.run(async () => {
          await db.atomic(() => db.run('INSERT INTO hits VALUES (?)', [i]));
          return (await db.get<{ n: number }>('SELECT count(*) AS n FROM hits'))!.n;
        });
      } finally {
        await scope.release();
      }
    };
    // Four connections open and idle, then the server goes away.
    await Promise.all([0, 1, 2, 3].map(request));
    assert.equal(db.stats().total, 4);
    await server.shutdown();
    const down = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => request(i)));
    for (const outcome of down) {
      assert.equal(outcome.status, 'rejected');
      assert.ok(outcome.reason instanceof DatabaseUnavailableError, String(outcome.reason));
      assert.equal(outcome.reason.message, CLIENT_MESSAGE);
    }
    assert.equal(db.stats().inUse, 0);
    assert.ok(logger.errors.length > 0);
    assert.ok(
      logger.errors.every((line) => /MySQL connection/.test(line)),
      logger.errors[0],
    );

    await server.restart();
    const up = await Promise.all(Array.from({ length: 20 }, (_, i) => request(i)));
    assert.ok(up.every((n) => n > 0));
    assert.equal(db.stats().inUse, 0);
    const ours = db.stats().total;
    assert.ok(ours >= 1 && ours <= 4);
    assert.equal((await mysqlSessions(url)).length, ours, 'SHOW PROCESSLIST: only the idle pool');
    await db.closePool();
    await waitFor(async () => (await mysqlSessions(url)).length === 0, 10_000);
  });

  test('closePool() past its timeout closes connections still in use on the server', async () => {
    const db = open({ closeTimeoutMillis: 100, logger: capturingLogger() });
    const scope = createScope(db);
    const id = await scope.run(() => connectionId(db));
    const slow = scope.run(() => db.get('SELECT SLEEP(30)')).catch((error) => error);
    await waitFor(async () => (await sleeping(url)).includes(id), 10_000);
    await db.closePool();
    // The statement's connection is cut off, not left to finish its 30 s.
    await waitFor(async () => !(await mysqlSessions(url)).includes(id), 10_000);
    // A 503 (PoolClosedError), not the interrupted SLEEP's answer.
    const outcome = await slow;
    assert.ok(outcome instanceof ServiceUnavailableError, String(outcome));
    await scope.release();
  });

  test('a request waiting for a connection while the pool is full gets PoolTimeoutError at its deadline', async () => {
    const db = open({ max: 1, acquireTimeoutMillis: 200, logger: capturingLogger() });
    const holder = createScope(db);
    await holder.run(() => db.get('SELECT 1'));
    const events: string[] = [];
    const waiting = createScope(db)
      .run(() => db.get('SELECT 1'))
      .then(
        () => events.push('served'),
        (error) => events.push(error instanceof PoolTimeoutError ? 'timed out' : String(error)),
      );
    await waiting;
    events.push('holder released');
    await holder.release();
    assert.deepEqual(events, ['timed out', 'holder released']);
  });

  test('an unreachable server: DatabaseUnavailableError, safe for the client; the detail is logged', async () => {
    const logger = capturingLogger();
    const port = await freePort();
    const db = open({ uri: `mysql://root@127.0.0.1:${port}/x`, logger });
    await assert.rejects(db.get('SELECT 1'), (error: Error) => {
      assert.ok(error instanceof DatabaseUnavailableError);
      assert.equal(error.message, CLIENT_MESSAGE);
      return true;
    });
    assert.match(logger.errors.join('\n'), /could not open a MySQL connection \(.*ECONNREFUSED/);
    assert.equal(db.stats().inUse, 0);
  });

  test('a server that accepts but never answers: DatabaseUnavailableError at connectTimeout', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const logger = capturingLogger();
      const db = open({ uri: `mysql://root@127.0.0.1:${port}/x`, connectTimeout: 300, logger });
      await assert.rejects(db.get('SELECT 1'), DatabaseUnavailableError);
      assert.match(logger.errors.join('\n'), /could not open a MySQL connection/);
      assert.equal(db.stats().inUse, 0);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });
});
