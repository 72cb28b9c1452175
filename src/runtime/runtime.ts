/**
 * db-hooks runtime: per-request database connections. Each request runs in a scope that checks
 * a connection out of the pool at its first statement and gives it back exactly once when the
 * response is done. This file gathers what apps and adapters import; each job has a file:
 *
 *   runtime-database     the `db` API handlers call
 *   runtime-scope        one request's scope: the release rules, leak detection
 *   runtime-options      what adapters take: database, checkout, atomic
 *   runtime-transaction  db.atomic(): transactions and savepoints, retries, db.onCommit()
 *   runtime-request-transaction  a request's own transaction (the adapters' `atomic`)
 *   runtime-stream       db.stream(): rows read as the loop asks, closed with the loop or request
 *   runtime-pool         slots, the wait for a free connection, the reset on return, drain
 *   runtime-wait         waiting in line with a deadline: for a connection, for SQLite's write turn
 *   runtime-session      which statements change a connection's session state
 *   runtime-driver       what a driver does (runtime-postgres, runtime-mysql; for SQLite
 *                        runtime-sqlite-core, on better-sqlite3 in runtime-sqlite or node:sqlite
 *                        in runtime-node-sqlite)
 *   runtime-errors       the errors, with codes and client-safe messages
 *   runtime-node, runtime-fetch  the lifecycle of a node:http or a Web request
 */
export * from './runtime-database.js';
export type * from './runtime-driver.js';
export * from './runtime-errors.js';
export type * from './runtime-options.js';
export type { Logger, PoolOptions, PoolStats } from './runtime-pool.js';
export { useFrameworkLogger } from './runtime-pool.js';
export type { RequestScope } from './runtime-scope.js';
export type { RowStream, StreamOptions } from './runtime-stream.js';
export type { AtomicBlock, AtomicOptions, CommitHook } from './runtime-transaction.js';
