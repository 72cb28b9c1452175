/**
 * db-hooks driver for SQLite, on Node's built-in node:sqlite (Node 22.16 and later): nothing to
 * install or compile. What the SQLite drivers share (write turns, the statement cache, pragmas,
 * the reset of a changed connection) is in runtime-sqlite-core; this file is how node:sqlite
 * does each step, and what it lacks next to better-sqlite3: a statement's read-only flag, which
 * it reads from the statement's bytecode, and a refusal of a second statement in one string.
 *
 * Node 22 prints an ExperimentalWarning when node:sqlite loads; 24 and later print nothing.
 * Start Node 22 with --disable-warning=ExperimentalWarning to hide it.
 */
import { DatabaseSync, type DatabaseSyncOptions, type StatementSync } from 'node:sqlite';
import { Database } from './runtime-database.js';
import {
  type SqliteCommonOptions,
  type SqliteConnection,
  SqliteDriver,
  type SqliteEngine,
} from './runtime-sqlite-core.js';

export type { Pragmas } from './runtime-session.js';

/**
 * node:sqlite's options (timeout, readOnly, enableForeignKeyConstraints, ...), passed as they
 * are, and ours. `timeout`, how long SQLite waits for a lock another process holds (that wait
 * blocks the event loop), defaults to 5000 as better-sqlite3's does, not to node:sqlite's 0.
 */
export interface NodeSqliteOptions
  extends SqliteCommonOptions<DatabaseSync>,
    Omit<DatabaseSyncOptions, 'open'> {}

export type NodeSqliteConnection = SqliteConnection<DatabaseSync, NodeStatement>;

export class NodeSqliteDatabase extends Database<NodeSqliteConnection> {
  constructor(options: NodeSqliteOptions = {}) {
    const path = options.path ?? 'app.db';
    // Every ':memory:' connection is a separate empty database, so share one.
    const max = path === ':memory:' ? 1 : options.max;
    const driver = new SqliteDriver(nodeSqlite(path, options), {
      ...options,
      path,
      readonly: options.readOnly,
    });
    super(driver, { ...options, max });
  }
}

/** Opcodes that make sqlite3_stmt_readonly() false, besides a write Transaction (P2 not 0). */
const WRITE_OPCODES = new Set(['Checkpoint', 'Vacuum', 'JournalMode']);

/**
 * SQLite's own sqlite3_stmt_readonly(), which node:sqlite does not expose, read as SQLite
 * computes it: from the statement's bytecode. Whether it returns rows says nothing:
 * `INSERT ... RETURNING` does, and writes. A statement EXPLAIN cannot take counts as a write,
 * which only makes it wait for its turn.
 */
function isReadonly(handle: DatabaseSync, sql: string): boolean {
  let program: Record<string, unknown>[];
  try {
    program = handle.prepare(`EXPLAIN ${sql}`).all();
  } catch {
    return false;
  }
  return !program.some(
    (op) => (op.opcode === 'Transaction' && op.p2 !== 0) || WRITE_OPCODES.has(op.opcode as string),
  );
}

/** Whitespace and comments: all that may follow the one statement of a string. */
const NOTHING = /^(?:\s|--[^\n]*(?:\n|$)|\/\*[\s\S]*?(?:\*\/|$))*$/;

/**
 * node:sqlite prepares the first statement of a string and drops the rest without a word;
 * better-sqlite3 refuses such a string, and so does this driver, rather than skip a statement.
 */
function refuseSecondStatement(statement: StatementSync, sql: string): void {
  const rest = sql.slice(statement.sourceSQL.length);
  if (!NOTHING.test(rest)) {
    throw new RangeError(
      'The supplied SQL string contains more than one statement: run them one at a time ' +
        '(db.atomic() makes them one transaction).',
    );
  }
}

/**
 * A prepared statement, and how its rows become objects. node:sqlite's own row objects have no
 * prototype; handlers get plain objects, as from better-sqlite3. Rows read as arrays and made
 * into objects with the column names, found once, cost less than node:sqlite's objects do. A
 * `*` (or a column named __proto__) takes node:sqlite's objects instead, and gives each its
 * prototype: SQLite prepares a statement again after a schema change, and `SELECT *` may then
 * name other columns.
 */
export interface NodeStatement {
  sync: StatementSync;
  /** The column names when rows come as arrays; undefined when they come as objects. */
  names: string[] | undefined;
}

type Row = Record<string, unknown>;

function toObject(names: string[], values: unknown[]): Row {
  const row: Row = {};
  for (let i = 0; i < names.length; i++) row[names[i]] = values[i];
  return row;
}

function withPrototype(row: object): Row {
  return Object.setPrototypeOf(row, Object.prototype) as Row;
}

function rowsOf(statement: NodeStatement, rows: unknown[]): Row[] {
  const { names } = statement;
  if (names === undefined) return rows.map((row) => withPrototype(row as object));
  return rows.map((values) => toObject(names, values as unknown[]));
}

function prepare(handle: DatabaseSync, sql: string) {
  const sync = handle.prepare(sql);
  refuseSecondStatement(sync, sql);
  const columns = sync.columns().map((column) => column.name);
  const reader = columns.length > 0;
  let names: string[] | undefined;
  if (reader && !sql.includes('*') && !columns.includes('__proto__')) {
    sync.setReturnArrays(true);
    names = columns;
  }
  return { statement: { sync, names }, readonly: isReadonly(handle, sql), reader };
}

function nodeSqlite(
  path: string,
  options: NodeSqliteOptions,
): SqliteEngine<DatabaseSync, NodeStatement> {
  type Args = [];
  return {
    // node:sqlite takes its own options from these and ignores the rest.
    open: () => new DatabaseSync(path, { timeout: 5000, ...options, open: true }),
    close: (handle) => handle.close(),
    isOpen: (handle) => handle.isOpen,
    inTransaction: (handle) => handle.isTransaction,
    isMemory: (handle) => handle.location() === null,
    exec: (handle, sql) => handle.exec(sql),
    prepare,
    run: ({ sync }, args) => {
      const result = sync.run(...(args as Args));
      return { changes: Number(result.changes), lastInsertRowid: result.lastInsertRowid };
    },
    get: (statement, args) => {
      const row: unknown = statement.sync.get(...(args as Args));
      return row === undefined ? undefined : rowsOf(statement, [row])[0];
    },
    all: (statement, args) => rowsOf(statement, statement.sync.all(...(args as Args))),
    iterate: function* (statement, args) {
      // for...of ends node:sqlite's iterator (return()) when this one is ended early.
      for (const row of statement.sync.iterate(...(args as Args))) {
        yield rowsOf(statement, [row])[0];
      }
    },
    allArrays: ({ sync, names }, args) => {
      if (names !== undefined) return sync.all(...(args as Args));
      sync.setReturnArrays(true);
      try {
        return sync.all(...(args as Args));
      } finally {
        sync.setReturnArrays(false);
      }
    },
    columns: ({ sync }) => sync.columns().map(({ name, type }) => ({ name, type })),
  };
}
