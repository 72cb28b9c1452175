/**
 * db-hooks driver for SQLite, on better-sqlite3: the fastest SQLite for Node, a native module.
 * What the SQLite drivers share (write turns, the statement cache, pragmas, the reset of a
 * changed connection) is in runtime-sqlite-core; this file is how better-sqlite3 does each step.
 */
import BetterSqlite3 from 'better-sqlite3';
import { Database } from './runtime-database.js';
import {
  type SqliteCommonOptions,
  type SqliteConnection as SqliteCoreConnection,
  SqliteDriver,
  type SqliteEngine,
} from './runtime-sqlite-core.js';

export type { Pragmas } from './runtime-session.js';

/** better-sqlite3's options (timeout, readonly, fileMustExist, ...), passed as they are, and ours. */
export interface SqliteOptions
  extends SqliteCommonOptions<BetterSqlite3.Database>,
    BetterSqlite3.Options {}

export type SqliteConnection = SqliteCoreConnection<
  BetterSqlite3.Database,
  BetterSqlite3.Statement
>;

export class SqliteDatabase extends Database<SqliteConnection> {
  constructor(options: SqliteOptions = {}) {
    const path = options.path ?? 'app.db';
    // Every ':memory:' connection is a separate empty database, so share one.
    const max = path === ':memory:' ? 1 : options.max;
    super(new SqliteDriver(betterSqlite3(path, options), { ...options, path }), {
      ...options,
      max,
    });
  }
}

function betterSqlite3(
  path: string,
  options: SqliteOptions,
): SqliteEngine<BetterSqlite3.Database, BetterSqlite3.Statement> {
  return {
    // better-sqlite3 takes its own options from these and ignores the rest.
    open: () => new BetterSqlite3(path, options),
    close: (handle) => handle.close(),
    isOpen: (handle) => handle.open,
    inTransaction: (handle) => handle.inTransaction,
    isMemory: (handle) => handle.memory,
    exec: (handle, sql) => handle.exec(sql),
    prepare: (handle, sql) => {
      const statement = handle.prepare(sql);
      return { statement, readonly: statement.readonly, reader: statement.reader };
    },
    run: (statement, args) => statement.run(...args),
    get: (statement, args) => statement.get(...args),
    all: (statement, args) => statement.all(...args),
    iterate: (statement, args) => statement.iterate(...args),
    allArrays: (statement, args) => {
      try {
        return statement.raw(true).all(...args);
      } finally {
        statement.raw(false);
      }
    },
    columns: (statement) => statement.columns().map(({ name, type }) => ({ name, type })),
  };
}
