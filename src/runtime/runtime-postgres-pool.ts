/**
 * db-hooks driver for PostgreSQL: the connections themselves, opened with pg's Client and kept
 * here while idle, the most recently returned first. The runtime's pool (runtime-pool) decides
 * how many are checked out and who waits; this file only opens, keeps and closes them, with
 * pg's pool options: min, idleTimeoutMillis, maxUses, maxLifetimeSeconds, allowExitOnIdle and
 * onConnect. Checking out an idle connection is taking it from a list: no second pool, with its
 * own queue, timers and events, stands between a request and its connection.
 */
import pg from 'pg';

/** What this file keeps of each connection. */
interface Kept {
  /** Checkouts so far (maxUses). */
  uses: number;
  /** When it was opened (maxLifetimeSeconds), in ms. */
  openedAt: number;
  /** When it went idle (idleTimeoutMillis), in ms. */
  idleSince: number;
}

const kept = Symbol('db-hooks connection');
/** pg's Client has ref() and unref() (its socket's), which its types leave out. */
type Client = pg.Client & { [kept]: Kept; ref(): void; unref(): void };

export class PostgresConnections {
  readonly #config: pg.PoolConfig;
  readonly #onError: (client: pg.Client) => void;
  /** Idle connections, the most recently returned last. */
  readonly #idle: Client[] = [];
  /** Open, idle or not. */
  #total = 0;
  /** Connections being closed: closeAll() waits for them too. */
  readonly #closing = new Set<Promise<void>>();
  #sweep: ReturnType<typeof setTimeout> | undefined;

  /** `onError`: a connection failed while checked out (an idle one is just closed). */
  constructor(config: pg.PoolConfig, onError: (client: pg.Client) => void) {
    this.#config = config;
    this.#onError = onError;
  }

  size(): { total: number; idle: number } {
    return { total: this.#total, idle: this.#idle.length };
  }

  /** The most recently returned idle connection, if any. */
  takeIdle(): pg.Client | undefined {
    for (let client = this.#idle.pop(); client !== undefined; client = this.#idle.pop()) {
      if (this.#expired(client, Date.now())) {
        this.#close(client);
        continue;
      }
      if (this.#config.allowExitOnIdle) client.ref();
      return client;
    }
    return undefined;
  }

  /** Takes a connection back for reuse, or closes it: when `discard`, or past maxUses or its lifetime. */
  checkIn(client: pg.Client, discard: boolean): void {
    const own = client as Client;
    own[kept].uses++;
    const now = Date.now();
    if (discard || this.#expired(own, now)) {
      this.#close(own);
      return;
    }
    own[kept].idleSince = now;
    // Idle connections need not keep the process alive (allowExitOnIdle).
    if (this.#config.allowExitOnIdle) own.unref();
    this.#idle.push(own);
    this.#scheduleSweep();
  }

  /** Past maxUses checkouts, or older than maxLifetimeSeconds. */
  #expired(client: Client, now: number): boolean {
    const { maxUses, maxLifetimeSeconds } = this.#config;
    const { uses, openedAt } = client[kept];
    if (maxUses !== undefined && maxUses > 0 && uses >= maxUses) return true;
    return maxLifetimeSeconds !== undefined && maxLifetimeSeconds > 0
      ? now - openedAt >= maxLifetimeSeconds * 1000
      : false;
  }

  /** Closes every idle connection; those checked out are closed as they come back (discarded). */
  async closeAll(): Promise<void> {
    clearTimeout(this.#sweep);
    this.#sweep = undefined;
    for (const client of this.#idle.splice(0)) this.#close(client);
    await Promise.all(this.#closing);
  }

  /** A new connection, set up by onConnect. */
  async open(): Promise<pg.Client> {
    const client = new pg.Client(this.#config) as Client;
    client[kept] = { uses: 0, openedAt: Date.now(), idleSince: 0 };
    // Without a listener, a server connection that dies would crash the process.
    client.on('error', () => {
      const index = this.#idle.indexOf(client);
      if (index === -1) {
        this.#onError(client);
        return;
      }
      this.#idle.splice(index, 1);
      this.#close(client);
    });
    this.#total++;
    try {
      await client.connect(); // gives up after connectionTimeoutMillis
      await Promise.resolve(this.#config.onConnect?.(client));
    } catch (error) {
      this.#close(client);
      throw error;
    }
    return client;
  }

  #close(client: Client): void {
    this.#total--;
    client.ref(); // an idle one's socket may be unref()ed: closePool() waits for it to close
    const closing: Promise<void> = client
      .end()
      .catch(() => {}) // a connection that failed has nothing left to close
      .finally(() => this.#closing.delete(closing));
    this.#closing.add(closing);
  }

  /**
   * One timer for all idle connections, set for the oldest one's idleTimeoutMillis: it closes
   * those idle that long, oldest first, keeping `min` open, then waits for the next.
   */
  #scheduleSweep(): void {
    const { idleTimeoutMillis } = this.#config;
    const oldest = this.#idle.at(0);
    if (this.#sweep !== undefined || oldest === undefined) return;
    if (!idleTimeoutMillis || idleTimeoutMillis <= 0 || this.#total <= (this.#config.min ?? 0)) {
      return;
    }
    const wait = oldest[kept].idleSince + idleTimeoutMillis - Date.now();
    this.#sweep = setTimeout(
      () => {
        this.#sweep = undefined;
        const cutOff = Date.now() - idleTimeoutMillis;
        while (
          this.#total > (this.#config.min ?? 0) &&
          (this.#idle.at(0)?.[kept].idleSince ?? Number.POSITIVE_INFINITY) <= cutOff
        ) {
          this.#close(this.#idle.shift()!);
        }
        this.#scheduleSweep();
      },
      Math.max(wait, 0),
    );
    this.#sweep.unref();
  }
}
