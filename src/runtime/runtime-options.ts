/**
 * db-hooks runtime: what every adapter takes as its last argument, and what it runs requests
 * with.
 */
import type { Database } from './runtime-database.js';

/**
 * When a request's connection is checked out: `'lazy'` at its first statement (a request that
 * never queries never takes one), `'eager'` as soon as the request arrives.
 */
export type Checkout = 'lazy' | 'eager';

/** What every adapter takes as its last argument. */
export interface AdapterOptions<D extends Database = Database> {
  /** The database whose connections the requests use. Default: `db` from ./index. */
  database?: D;
  /** Default 'lazy'. */
  checkout?: Checkout;
  /**
   * Run each request in one transaction, begun at its first statement and ended with the
   * response: see runtime-request-transaction for when it commits. Default false.
   */
  atomic?: boolean;
}

/** What an adapter was set up with, its defaults applied. */
export type RequestSettings = {
  database: Database;
  checkout?: Checkout | undefined;
  atomic?: boolean | undefined;
};
