// What every load-test and benchmark server shares: the mode it runs in, the SQL for its database, the
// generated code (for MODE=generated) or the hand-written baseline's pool (for MODE=baseline).
//
// Environment: MODE (generated | baseline | pool-query | fastify-postgres), DB (postgres | mysql | sqlite), PORT,
// GENERATED_DIR (absolute path of generated JS ESM files), DATABASE_URL or SQLITE_PATH, POOL_MAX,
// SQLITE_DRIVER (node:sqlite: the generated runtime on Node's built-in SQLite, else better-sqlite3),
// ALS (1: switch AsyncLocalStorage on process-wide, see below), CHECKOUT (lazy | eager: the
// generated adapter's checkout option), SQLITE_BUSY_TIMEOUT_MS (better-sqlite3's `timeout`).
import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

// ALS=1 gives a baseline the one cost of the generated code that is Node's, not the adapter's: on
// Node 20 (before AsyncContextFrame) an AsyncLocalStorage that has been entered once installs
// promise hooks, and from then on every promise in the process, the framework's and the driver's
// included, pays a hook call. The baseline never reads this store; it only pays for it. So
// baseline+ALS against baseline is Node's AsyncLocalStorage cost, and generated against
// baseline+ALS is the adapter's own.
export const als = process.env.ALS === '1';

// A server never outlives the process that started it: when the test or benchmark (or the
// cluster primary) goes away, its IPC channel closes and the server exits.
process.once('disconnect', () => process.exit(0));
// Exit normally when stopped, so that --cpu-prof (BENCH_NODE_OPTIONS) writes its profile.
process.once('SIGTERM', () => process.exit(0));
if (als) new AsyncLocalStorage().enterWith({});

export const mode = process.env.MODE ?? 'generated';
export const database = process.env.DB ?? 'sqlite';
export const port = Number(process.env.PORT ?? 3000);
export const poolMax = Number(process.env.POOL_MAX ?? 10);

const placeholder = (n) => (database === 'postgres' ? `$${n}` : '?');
export const sql = {
  user: `SELECT id, name FROM users WHERE id = ${placeholder(1)}`,
  // GET /users/:id/summary, the three-statement route: the user, a count, its neighbour.
  count: 'SELECT count(*) AS count FROM users',
  neighbour: `SELECT id, name FROM users WHERE id > ${placeholder(1)} ORDER BY id LIMIT 1`,
  debit: `UPDATE accounts SET balance = balance - 1 WHERE id = ${placeholder(1)}`,
  credit: `UPDATE accounts SET balance = balance + 1 WHERE id = ${placeholder(1)}`,
  backend:
    {
      postgres: 'SELECT pg_backend_pid() AS pid',
      mysql: 'SELECT CONNECTION_ID() AS pid',
    }[database] ?? 'SELECT 0 AS pid',
};

/**
 * The generated adapter for a target, and a database made from the generated runtime with the
 * pool settings the run asks for (POOL_MAX, ACQUIRE_TIMEOUT_MS, PGBOUNCER).
 */
export async function loadGenerated(target) {
  const dir = process.env.GENERATED_DIR;
  const adapter = await import(`${dir}/${target}.js`);
  const options = {
    max: poolMax,
    acquireTimeoutMillis: Number(process.env.ACQUIRE_TIMEOUT_MS ?? 5000),
  };
  let db;
  if (database === 'postgres') {
    const { PostgresDatabase } = await import(`${dir}/runtime-postgres.js`);
    db = new PostgresDatabase({
      ...options,
      connectionString: process.env.DATABASE_URL,
      pgbouncer: process.env.PGBOUNCER === 'true',
    });
  } else if (database === 'mysql') {
    const { MysqlDatabase } = await import(`${dir}/runtime-mysql.js`);
    db = new MysqlDatabase({ ...options, uri: process.env.DATABASE_URL });
  } else {
    const sqliteOptions = {
      ...options,
      path: process.env.SQLITE_PATH,
      timeout: Number(process.env.SQLITE_BUSY_TIMEOUT_MS ?? 5000),
      onConnect: (connection) => void sqliteConnections.add(connection),
    };
    if (process.env.SQLITE_DRIVER === 'node:sqlite') {
      const { NodeSqliteDatabase } = await import(`${dir}/runtime-node-sqlite.js`);
      db = new NodeSqliteDatabase(sqliteOptions);
    } else {
      const { SqliteDatabase } = await import(`${dir}/runtime-sqlite.js`);
      db = new SqliteDatabase(sqliteOptions);
    }
  }
  answerStats(db);
  /** What the server passes to the adapter: this `db`, and CHECKOUT's timing. */
  const adapterOptions = { database: db, checkout: process.env.CHECKOUT ?? 'lazy' };
  return { adapter, db, adapterOptions };
}

/**
 * Every better-sqlite3 connection the generated pool opened (through its onConnect hook): what
 * pg_stat_activity tells about PostgreSQL, /__stats tells about SQLite from these.
 */
const sqliteConnections = new Set();

function sqliteStats() {
  let open = 0;
  let inTransaction = 0;
  for (const connection of sqliteConnections) {
    // better-sqlite3's names, else node:sqlite's (SQLITE_DRIVER=node:sqlite).
    if (!(connection.open ?? connection.isOpen)) {
      sqliteConnections.delete(connection);
      continue;
    }
    open++;
    if (connection.inTransaction ?? connection.isTransaction) inTransaction++;
  }
  return { open, inTransaction };
}

/** Under node:cluster the primary asks each worker for its pool's numbers over IPC. */
function answerStats(db) {
  process.on('message', (message) => {
    if (message === 'stats') process.send?.({ stats: work.stats(db) });
  });
}

/**
 * The hand-written baseline: a raw pg.Pool, mysql2's pool (getConnection() and release() per
 * request, as its README shows), or one shared better-sqlite3 connection. Both pools have the
 * shape checkoutFor() takes: connect() gives a client with query() and release().
 */
export async function baselineDriver() {
  if (database === 'postgres') {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: poolMax });
    pool.on('error', () => {});
    return { kind: 'pool', pool };
  }
  if (database === 'mysql') {
    const { default: mysql } = await import('mysql2/promise');
    const mysqlPool = mysql.createPool({ uri: process.env.DATABASE_URL, connectionLimit: poolMax });
    const pool = {
      async connect() {
        const conn = await mysqlPool.getConnection();
        return {
          query: async (text, params) => ({ rows: (await conn.query(text, params))[0] }),
          release: () => conn.release(),
        };
      },
    };
    return { kind: 'pool', pool };
  }
  const { default: Sqlite } = await import('better-sqlite3');
  const connection = new Sqlite(process.env.SQLITE_PATH ?? 'app.db');
  connection.pragma('journal_mode = WAL');
  return { kind: 'sqlite', connection, user: connection.prepare(sql.user) };
}

/**
 * GET /users/:id/summary's three statements through `query(sql, params)`, which answers rows:
 * the user, how many users there are, and the next one.
 */
export async function summary(query, id) {
  const user = (await query(sql.user, [id]))[0];
  const { count } = (await query(sql.count))[0];
  const neighbour = (await query(sql.neighbour, [id]))[0];
  return { user, count: Number(count), neighbour };
}

/**
 * The hand-written baseline's checkout, done correctly: the release is tied to the response's
 * 'close' before the checkout starts (a client that hangs up while waiting for the pool must not
 * leak the connection it is about to get), and it waits for the statement in flight, so a busy
 * connection is never handed to the next request.
 */
export function checkoutFor(pool, response) {
  let inFlight = Promise.resolve();
  let released = false;
  const checkedOut = pool.connect().then((client) => ({
    query(sql, params) {
      if (released) return Promise.reject(new Error('connection already released'));
      const result = client.query(sql, params);
      inFlight = result.then(
        () => {},
        () => {},
      );
      return result;
    },
    client,
  }));
  response.once('close', () => {
    released = true;
    checkedOut.then(
      ({ client }) => inFlight.then(() => client.release()),
      () => {},
    );
  });
  return checkedOut;
}

/**
 * The soak routes' work, written once against the runtime API. (GET /users/:id, the benchmarked
 * route, is written inline in each server, the way a user writes it.)
 */
export const work = {
  async fail() {
    await sleep(1);
    throw Object.assign(new Error('handler failed on purpose'), { status: 500 });
  },
  async slow(db, ms) {
    await db.get(sql.backend);
    await sleep(ms);
    return db.get(sql.backend);
  },
  async transfer(db) {
    return db.atomic(async () => {
      await db.run(sql.debit, [1]);
      await sleep(1);
      await db.run(sql.credit, [2]);
      return { ok: true };
    });
  },
  stats(db) {
    // Collect first so heapUsed shows what is live, not what is merely not yet collected.
    globalThis.gc?.();
    const pool = db.stats();
    return {
      // This request holds a connection of its own: count only the others.
      pool: { ...pool, inUse: pool.inUse - (db.isClosed() ? 0 : 1) },
      memory: process.memoryUsage(),
      // SQLite: connections open, and those with a transaction open (none may be, once idle).
      sqlite: sqliteStats(),
    };
  },
};

/** Tells the parent (bench harness or cluster primary) once the server accepts connections. */
export function listening(server) {
  const ready = () => {
    process.send?.({ ready: port });
    console.log(`listening on http://127.0.0.1:${port} (${mode}${als ? '+ALS' : ''}, ${database})`);
  };
  if (server.listening) ready();
  else server.once('listening', ready);
  return server;
}
