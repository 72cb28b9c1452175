/**
 * db-hooks runtime: a connection's session state. Which statements change it (settings,
 * temporary tables, locks, listeners, prepared statements, pragmas), as HikariCP tracks its
 * "dirty bits": every statement passes through a driver, which marks the connection, and a
 * marked connection is reset when it goes back to the pool, while an unmarked one costs nothing.
 * What runs inside a function, procedure or trigger is not seen: the SQL text is all there is
 * to read. And what a new SQLite connection starts with: its pragmas.
 */

/** A statement that changes session state, and what lasts one transaction instead. */
export interface SessionChange {
  /** What it is, for messages: 'SET', 'set_config(..., false)', 'pg_advisory_lock()'. */
  statement: string;
  /** What lasts one transaction instead, for PgBouncer's transaction pooling. */
  instead: string;
}

const settings = 'SET LOCAL or set_config(name, value, true) inside db.atomic()';

// Comments and whitespace before a statement: the first token decides what it is.
const lead = String.raw`(?:\s|--[^\n]*\n|/\*[\s\S]*?\*/)*`;

/**
 * The cheap first look, for every statement: a word that may start a session change, at the
 * start or after a `;` (a simple query can hold several statements), or a function anywhere.
 * `UPDATE t SET x` does not match: its SET follows a table name.
 */
const POSTGRES_HINT = new RegExp(
  String.raw`(?:^|;)${lead}(?:SET|RESET|DISCARD|LISTEN|UNLISTEN|PREPARE|DEALLOCATE|DECLARE|CREATE|LOAD)\b` +
    String.raw`|set_config|advisory_lock|\bINTO\s+TEMP`,
  'i',
);

/** Statement-initial commands, checked once the hint matched, on one statement at a time. */
const POSTGRES_COMMANDS: [RegExp, SessionChange][] = [
  // SET LOCAL, SET TRANSACTION and SET CONSTRAINTS last one transaction.
  [/^SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)/i, { statement: 'SET', instead: settings }],
  [/^RESET\b/i, { statement: 'RESET', instead: settings }],
  [
    /^DISCARD\b/i,
    { statement: 'DISCARD', instead: "leave it out, PgBouncer's server connections are shared" },
  ],
  [
    /^(?:UN)?LISTEN\b/i,
    { statement: 'LISTEN', instead: 'a pg.Client of its own, outside the pool, for listening' },
  ],
  [
    /^(?:PREPARE|DEALLOCATE)\b/i,
    { statement: 'PREPARE', instead: 'parameters ($1, $2): pg prepares those unnamed' },
  ],
  [
    /^DECLARE\b[^;]*\bWITH\s+HOLD\b/i,
    { statement: 'DECLARE ... WITH HOLD', instead: 'a cursor without HOLD inside db.atomic()' },
  ],
  [
    // ON COMMIT DROP ends with the transaction (at once, outside one).
    /^(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:GLOBAL\s+|LOCAL\s+)?TEMP(?:ORARY)?\b|CREATE\b.*\bpg_temp\s*\.|(?:SELECT|WITH)\b.*\bINTO\s+TEMP(?:ORARY)?\b)(?![\s\S]*\bON\s+COMMIT\s+DROP\b)/is,
    {
      statement: 'a temporary table',
      instead: 'CREATE TEMP TABLE ... ON COMMIT DROP inside db.atomic()',
    },
  ],
  [/^LOAD\b/i, { statement: 'LOAD', instead: "session_preload_libraries in the server's config" }],
];

// One level of parentheses inside an argument is enough for set_config(name, value, is_local).
const argument = String.raw`(?:\([^()]*\)|[^,()])*`;
const SET_CONFIG = /\bset_config\s*\(/gi;
const SET_CONFIG_LOCAL = new RegExp(
  String.raw`\bset_config\s*\(${argument},${argument},\s*true\s*\)`,
  'gi',
);
// The session-level ones; pg_advisory_xact_lock() and its kin end with the transaction.
const ADVISORY_LOCK = /\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(/i;

/** What comes out before reading statements: string literals and comments (never run). */
const INERT = /'(?:[^']|'')*'|--[^\n]*|\/\*[\s\S]*?\*\//g;

/** The session change a PostgreSQL statement (or `;`-separated statements) makes, if any. */
export function postgresSessionChange(sql: string): SessionChange | undefined {
  if (!POSTGRES_HINT.test(sql)) return undefined;
  const text = sql.replace(INERT, (inert) => (inert.startsWith("'") ? "''" : ' '));
  const calls = text.match(SET_CONFIG)?.length ?? 0;
  if (calls > (text.match(SET_CONFIG_LOCAL)?.length ?? 0)) {
    return { statement: 'set_config(..., false)', instead: settings };
  }
  if (ADVISORY_LOCK.test(text)) {
    return {
      statement: 'pg_advisory_lock()',
      instead: 'pg_advisory_xact_lock() inside db.atomic()',
    };
  }
  for (const statement of text.split(';')) {
    const trimmed = statement.trim();
    for (const [pattern, change] of POSTGRES_COMMANDS) if (pattern.test(trimmed)) return change;
  }
  return undefined;
}

export type Pragmas = Record<string, string | number>;

/**
 * The pragmas every new SQLite connection gets, as SQL: the defaults (WAL, synchronous NORMAL),
 * then the configured ones over them. Names and values are checked, as PRAGMA takes no
 * parameters.
 */
export function newConnectionPragmas(options: { pragmas?: Pragmas; readonly?: boolean }): string[] {
  // A read-only connection cannot switch the file to WAL: it takes the file as it is.
  const defaults: Pragmas = options.readonly ? {} : { journal_mode: 'wal', synchronous: 'normal' };
  return Object.entries({ ...defaults, ...options.pragmas }).map(([name, value]) => {
    if (!/^\w+$/.test(name) || !/^[\w.-]+$/.test(String(value))) {
      throw new TypeError(
        `Invalid SQLite pragma ${JSON.stringify(name)}: ${JSON.stringify(value)}. Use a pragma ` +
          "name and a plain value, e.g. { cache_size: -20000, foreign_keys: 'on' }.",
      );
    }
    return `${name} = ${value}`;
  });
}

// PRAGMAs that take an argument only to say what to read, or act on the file, not the session.
const SQLITE_READS = new Set([
  'table_info',
  'table_xinfo',
  'table_list',
  'index_info',
  'index_xinfo',
  'index_list',
  'foreign_key_list',
  'foreign_key_check',
  'integrity_check',
  'quick_check',
  'wal_checkpoint',
  'optimize',
  'incremental_vacuum',
]);

const name = String.raw`["\x60[]?\w+["\x60\]]?`;
// A pragma with a value, `PRAGMA [schema.]name = value` or `PRAGMA [schema.]name(value)`.
const SQLITE_PRAGMA = new RegExp(
  String.raw`^${lead}PRAGMA\s+(?:${name}\s*\.\s*)?["\x60[]?(\w+)["\x60\]]?\s*[=(]`,
  'i',
);
const SQLITE_SESSION = new RegExp(
  String.raw`^${lead}(?:ATTACH|DETACH)\b` +
    String.raw`|^${lead}CREATE\s+TEMP(?:ORARY)?\b` +
    String.raw`|^${lead}CREATE\s+(?:UNIQUE\s+|VIRTUAL\s+)?(?:TABLE|VIEW|TRIGGER|INDEX)\s+(?:IF\s+NOT\s+EXISTS\s+)?["\x60[]?temp["\x60\]]?\s*\.`,
  'i',
);

/**
 * True when a SQLite statement changes its connection's state: a pragma set (a pragma read,
 * such as `PRAGMA foreign_keys` or `PRAGMA table_info(t)`, does not), ATTACH or DETACH, or a
 * temporary table, view, trigger or index.
 */
export function sqliteChangesSession(sql: string): boolean {
  if (SQLITE_SESSION.test(sql)) return true;
  const pragma = SQLITE_PRAGMA.exec(sql)?.[1];
  return pragma !== undefined && !SQLITE_READS.has(pragma.toLowerCase());
}

/**
 * MySQL and MariaDB: the first look, as for PostgreSQL. `SET TRANSACTION` (no SESSION) lasts
 * the next transaction only; `UPDATE t SET x` does not match.
 */
const MYSQL_HINT = new RegExp(
  String.raw`(?:^|;)${lead}(?:SET|CREATE|LOCK|PREPARE|USE|HANDLER)\b|GET_LOCK|:=|\bINTO\s+@`,
  'i',
);
const MYSQL_COMMANDS =
  /^(?:SET\s+(?!TRANSACTION\b)|CREATE\s+TEMPORARY\b|LOCK\s+TABLES?\b|PREPARE\b|USE\b|HANDLER\b)/i;
// Anywhere in a statement: a user-level lock, a user variable assigned in a SELECT.
const MYSQL_ANYWHERE = /\bGET_LOCK\s*\(|@\s*[\w$.]+\s*:=|@`[^`]*`\s*:=|\bINTO\s+@/i;
/** MySQL's string literals (backslash escapes, '' and "") and comments, `#` ones too. */
const MYSQL_INERT = /'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|(?:--\s|#)[^\n]*|\/\*[\s\S]*?\*\//g;

/**
 * True when a MySQL or MariaDB statement changes its connection's session state: SET (user
 * variables, SET SESSION, SET NAMES, SET ROLE), `@v := ...` and `INTO @v`, temporary tables,
 * GET_LOCK() and LOCK TABLES, PREPARE, USE, HANDLER.
 */
export function mysqlChangesSession(sql: string): boolean {
  if (!MYSQL_HINT.test(sql)) return false;
  const text = sql.replace(MYSQL_INERT, (inert) => (/^['"]/.test(inert) ? "''" : ' '));
  if (MYSQL_ANYWHERE.test(text)) return true;
  return text.split(';').some((statement) => MYSQL_COMMANDS.test(statement.trim()));
}
