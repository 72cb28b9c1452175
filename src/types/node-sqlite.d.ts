// The part of node:sqlite that runtime-node-sqlite uses, as @types/node 22.16+ declares it, for
// this repository's type check: its @types/node is 20's, which has no node:sqlite. Projects get
// @types/node 22, whose own declarations these match. Delete this file once the repository's
// @types/node is 22.16 or later.
declare module 'node:sqlite' {
  type SQLInputValue = null | number | bigint | string | NodeJS.ArrayBufferView;
  type SQLOutputValue = null | number | bigint | string | Uint8Array;
  interface DatabaseSyncOptions {
    open?: boolean | undefined;
    enableForeignKeyConstraints?: boolean | undefined;
    enableDoubleQuotedStringLiterals?: boolean | undefined;
    readOnly?: boolean | undefined;
    allowExtension?: boolean | undefined;
    timeout?: number | undefined;
    readBigInts?: boolean | undefined;
    returnArrays?: boolean | undefined;
    allowBareNamedParameters?: boolean | undefined;
    allowUnknownNamedParameters?: boolean | undefined;
  }
  class DatabaseSync {
    constructor(path: string | Buffer | URL, options?: DatabaseSyncOptions);
    close(): void;
    exec(sql: string): void;
    function(name: string, func: (...args: SQLOutputValue[]) => SQLInputValue): void;
    location(dbName?: string): string | null;
    open(): void;
    prepare(sql: string): StatementSync;
    readonly isOpen: boolean;
    readonly isTransaction: boolean;
  }
  interface StatementColumnMetadata {
    column: string | null;
    database: string | null;
    name: string;
    table: string | null;
    type: string | null;
  }
  interface StatementResultingChanges {
    changes: number | bigint;
    lastInsertRowid: number | bigint;
  }
  class StatementSync {
    all(...anonymousParameters: SQLInputValue[]): Record<string, SQLOutputValue>[];
    all(
      namedParameters: Record<string, SQLInputValue>,
      ...anonymousParameters: SQLInputValue[]
    ): Record<string, SQLOutputValue>[];
    get(...anonymousParameters: SQLInputValue[]): Record<string, SQLOutputValue> | undefined;
    get(
      namedParameters: Record<string, SQLInputValue>,
      ...anonymousParameters: SQLInputValue[]
    ): Record<string, SQLOutputValue> | undefined;
    run(...anonymousParameters: SQLInputValue[]): StatementResultingChanges;
    run(
      namedParameters: Record<string, SQLInputValue>,
      ...anonymousParameters: SQLInputValue[]
    ): StatementResultingChanges;
    iterate(
      ...anonymousParameters: SQLInputValue[]
    ): IterableIterator<Record<string, SQLOutputValue>>;
    iterate(
      namedParameters: Record<string, SQLInputValue>,
      ...anonymousParameters: SQLInputValue[]
    ): IterableIterator<Record<string, SQLOutputValue>>;
    columns(): StatementColumnMetadata[];
    setReturnArrays(enabled: boolean): void;
    readonly sourceSQL: string;
  }
}
