// The one table of what create-db-hooks can generate. Adding a framework is adding a folder under
// templates/targets/ and a row here; adding a database is a folder under templates/databases/,
// a runtime driver file in src/runtime/, and a row in `databases`.

export interface Dependency {
  name: string;
  /** The range written into the user's package.json. */
  version: string;
  /** Needed only to type-check TypeScript projects. */
  typesOnly?: boolean;
  /**
   * Runs an install script (a native build): a new app lists it in package.json "allowScripts",
   * so npm versions that ask for approval of install scripts run it without a prompt.
   */
  installScript?: boolean;
  /** A tool for development (the prisma CLI): a devDependency in either language. */
  dev?: boolean;
}

export interface TargetDefinition {
  id: string;
  /** Short, for sentences and the summary line: `Express`, `node:http`. */
  name: string;
  title: string;
  /** Packages whose presence in package.json marks the project as using this framework. */
  detectedBy: string[];
  /**
   * Targets this framework runs on: found together with it, they are its platform, not a framework
   * of their own (a NestJS app that lists express or fastify), so only this one is pre-selected.
   */
  runsOn?: string[];
  /** Glue packages the generated adapter imports, besides the framework itself. */
  dependencies: Dependency[];
  /** The framework itself, installed only into a new app made in an empty directory. */
  frameworkDependencies: Dependency[];
  /** The names the generated adapter exports, for the import line in the next steps. */
  exports: readonly string[];
  /** One line for --help: how a project uses the generated code. */
  usage: string;
  /** Where that line goes in the app, for the Next steps; none when it wraps the whole server. */
  placement?: string;
  /** The request lifecycles its adapter imports (src/runtime/runtime-<name>.ts). */
  lifecycles: readonly ('node' | 'fetch')[];
}

/** The runtime library every project gets (src/runtime/<file>.ts), besides lifecycles and driver. */
export const runtimeFiles = [
  'runtime',
  'runtime-errors',
  'runtime-pool',
  'runtime-wait',
  'runtime-session',
  'runtime-scope',
  'runtime-transaction',
  'runtime-request-transaction',
  'runtime-stream',
  'runtime-options',
  'runtime-driver',
  'runtime-database',
] as const;

export const targets = [
  {
    id: 'express',
    name: 'Express',
    title: 'Express 4 and 5 (middleware)',
    detectedBy: ['express'],
    dependencies: [],
    frameworkDependencies: [
      { name: 'express', version: '^5.1.0' },
      { name: '@types/express', version: '^5.0.0', typesOnly: true },
    ],
    exports: ['dbHooks'],
    usage: 'app.use(dbHooks())',
    placement: 'before the routes that use the database',
    lifecycles: ['node'],
  },
  {
    id: 'fastify',
    name: 'Fastify',
    title: 'Fastify 5 (plugin)',
    detectedBy: ['fastify'],
    dependencies: [{ name: 'fastify-plugin', version: '^5.0.1' }],
    frameworkDependencies: [{ name: 'fastify', version: '^5.4.0' }],
    exports: ['dbHooks'],
    usage: 'await app.register(dbHooks)',
    placement: 'before the routes; its hooks apply to the whole app',
    lifecycles: ['node'],
  },
  {
    id: 'koa',
    name: 'Koa',
    title: 'Koa 2 and 3 (middleware)',
    detectedBy: ['koa'],
    dependencies: [],
    frameworkDependencies: [
      { name: 'koa', version: '^3.0.0' },
      { name: '@types/koa', version: '^2.15.0', typesOnly: true },
    ],
    exports: ['dbHooks'],
    usage: 'app.use(dbHooks())',
    placement: 'first, so it wraps the middleware that use the database',
    lifecycles: ['node'],
  },
  {
    id: 'hono',
    name: 'Hono',
    title: 'Hono 4 on @hono/node-server (middleware)',
    detectedBy: ['hono'],
    dependencies: [],
    frameworkDependencies: [
      { name: 'hono', version: '^4.8.0' },
      { name: '@hono/node-server', version: '^2.1.9' },
    ],
    exports: ['dbHooks'],
    usage: 'app.use(dbHooks())',
    placement: 'before the routes that use the database',
    lifecycles: ['node', 'fetch'],
  },
  {
    id: 'node-http',
    name: 'node:http',
    title: 'node:http (wraps a (req, res) listener)',
    detectedBy: [],
    dependencies: [],
    frameworkDependencies: [],
    exports: ['withDatabase'],
    usage: 'http.createServer(withDatabase(listener))',
    lifecycles: ['node'],
  },
  {
    id: 'fetch',
    name: 'Web fetch handlers',
    title: 'Web fetch handlers (wraps a (Request) => Response handler)',
    detectedBy: [],
    dependencies: [],
    // Only the sample app needs it: Node has no built-in server for fetch handlers.
    frameworkDependencies: [{ name: '@hono/node-server', version: '^2.1.9' }],
    exports: ['withDatabase'],
    usage: 'export default { fetch: withDatabase(handler) }',
    lifecycles: ['fetch'],
  },
  {
    id: 'hooks',
    name: 'before/after hooks',
    title: 'before/after hooks for any framework: beforeRequest() / teardownRequest()',
    detectedBy: [],
    dependencies: [],
    frameworkDependencies: [],
    exports: ['beforeRequest', 'teardownRequest', 'requestScope'],
    usage: 'http.createServer(requestScope(app)); beforeRequest() ... teardownRequest()',
    lifecycles: ['node'],
  },
  {
    id: 'nestjs',
    name: 'NestJS',
    title: 'NestJS 12 on Express or Fastify (module)',
    detectedBy: ['@nestjs/core'],
    runsOn: ['express', 'fastify'],
    dependencies: [],
    frameworkDependencies: [
      { name: '@nestjs/common', version: '^12.5.0' },
      { name: '@nestjs/core', version: '^12.5.0' },
      { name: '@nestjs/platform-express', version: '^12.5.0' },
      { name: 'reflect-metadata', version: '^0.2.2' },
      { name: 'rxjs', version: '^7.8.2' },
    ],
    exports: ['DbHooksModule'],
    usage: 'imports: [DbHooksModule]',
    placement: 'in the root module; it covers every route of the app',
    lifecycles: ['node'],
  },
] as const satisfies readonly TargetDefinition[];

export type TargetId = (typeof targets)[number]['id'];

export interface DatabaseDefinition {
  id: string;
  title: string;
  /** The runtime driver file copied next to runtime.ts (src/runtime/<file>.ts). */
  runtimeFile: string;
  dependencies: Dependency[];
  /** The environment variable the generated index reads. */
  envVar: string;
  /**
   * --driver: the libraries it can run on, the default first. Each replaces the row's
   * runtimeFile and dependencies, which are the default's.
   */
  drivers?: readonly DriverDefinition[];
  /** Runtime files every driver of this database imports (src/runtime/<file>.ts). */
  driverRuntimeFiles?: readonly string[];
}

/** One library a database can run on (--driver). */
export interface DriverDefinition {
  id: string;
  title: string;
  /** The driver file copied next to runtime.ts, and what the generated index imports. */
  runtimeFile: string;
  /** The class the generated index makes `db` with. */
  className: string;
  dependencies: Dependency[];
}

export const databases = [
  {
    id: 'sqlite',
    title: "SQLite via better-sqlite3 or Node's node:sqlite (no server needed)",
    runtimeFile: 'runtime-sqlite',
    dependencies: [
      { name: 'better-sqlite3', version: '^12.6.2', installScript: true },
      { name: '@types/better-sqlite3', version: '^7.6.13', typesOnly: true },
    ],
    envVar: 'SQLITE_PATH',
    drivers: [
      {
        id: 'better-sqlite3',
        title: 'the fastest; a native module (a prebuilt binary, else compiled)',
        runtimeFile: 'runtime-sqlite',
        className: 'SqliteDatabase',
        dependencies: [
          { name: 'better-sqlite3', version: '^12.6.2', installScript: true },
          { name: '@types/better-sqlite3', version: '^7.6.13', typesOnly: true },
        ],
      },
      {
        id: 'node:sqlite',
        title: 'built into Node.js: nothing to install or compile',
        runtimeFile: 'runtime-node-sqlite',
        className: 'NodeSqliteDatabase',
        dependencies: [],
      },
    ],
    driverRuntimeFiles: ['runtime-sqlite-core'],
  },
  {
    id: 'postgres',
    title: 'PostgreSQL via pg',
    runtimeFile: 'runtime-postgres',
    dependencies: [
      { name: 'pg', version: '^8.16.0' },
      // db.stream()'s cursors, by pg's author.
      { name: 'pg-cursor', version: '^2.22.1' },
      { name: '@types/pg', version: '^8.15.0', typesOnly: true },
      { name: '@types/pg-cursor', version: '^2.7.2', typesOnly: true },
    ],
    envVar: 'DATABASE_URL',
    driverRuntimeFiles: ['runtime-postgres-pool', 'runtime-postgres-stream'],
  },
  {
    id: 'mysql',
    title: 'MySQL 8 or MariaDB 10.11+ via mysql2',
    runtimeFile: 'runtime-mysql',
    driverRuntimeFiles: ['runtime-mysql-stream'],
    // mysql2 ships its own types.
    dependencies: [{ name: 'mysql2', version: '^3.26.1' }],
    envVar: 'DATABASE_URL',
  },
] as const satisfies readonly DatabaseDefinition[];

export type DatabaseId = (typeof databases)[number]['id'];

export interface OrmDefinition {
  id: string;
  /** For sentences: `Kysely`. */
  name: string;
  title: string;
  /** The ORM itself: the generated <dir>/<id> file imports it. */
  dependencies: Dependency[];
  /** The databases its template has a binding for. */
  databases: readonly DatabaseId[];
  /** What it needs on one database only (Prisma's adapter for pg). */
  databaseDependencies?: Partial<Record<DatabaseId, readonly Dependency[]>>;
}

/** --orm: query builders and ORMs bound to `db`, one template each in templates/orms/. */
export const orms = [
  {
    id: 'kysely',
    name: 'Kysely',
    title: 'Kysely 0.29 (exports orm, a Kysely on the request connection)',
    dependencies: [{ name: 'kysely', version: '^0.29.9' }],
    databases: ['sqlite', 'postgres', 'mysql'],
  },
  {
    id: 'drizzle',
    name: 'Drizzle',
    title: 'Drizzle ORM 0.45 (exports orm, a Drizzle database on the request connection)',
    dependencies: [{ name: 'drizzle-orm', version: '^0.45.4' }],
    databases: ['sqlite', 'postgres', 'mysql'],
  },
  {
    id: 'prisma',
    name: 'Prisma',
    title: 'Prisma 7 (exports prismaFor and prismaAdapter, for your generated PrismaClient)',
    dependencies: [
      { name: '@prisma/client', version: '^7.10.1' },
      { name: '@prisma/driver-adapter-utils', version: '^7.10.1' },
      { name: 'prisma', version: '^7.10.1', dev: true },
    ],
    databaseDependencies: { postgres: [{ name: '@prisma/adapter-pg', version: '^7.10.1' }] },
    databases: ['sqlite', 'postgres'],
  },
] as const satisfies readonly OrmDefinition[];

export type OrmId = (typeof orms)[number]['id'];

/**
 * What a new app made in an empty directory needs besides its framework and driver: TypeScript
 * apps run with tsx (so `npm start` needs no build step) and type-check with tsc.
 */
export const newAppDependencies = {
  ts: [
    { name: 'tsx', version: '^4.20.0' },
    { name: 'typescript', version: '~5.9.3', typesOnly: true },
    { name: '@types/node', version: '^22.19.0', typesOnly: true },
  ],
  js: [],
} as const satisfies Record<'ts' | 'js', readonly Dependency[]>;

/** Every TypeScript project needs Node's types: the runtime imports node:async_hooks. */
export const typeScriptDependencies = [
  { name: '@types/node', version: '^22.19.0', typesOnly: true },
] as const satisfies readonly Dependency[];

export const targetIds: readonly TargetId[] = targets.map((target) => target.id);
export const databaseIds: readonly DatabaseId[] = databases.map((database) => database.id);
export const ormIds: readonly OrmId[] = orms.map((orm) => orm.id);

export function findTarget(id: string): (typeof targets)[number] | undefined {
  return targets.find((target) => target.id === id);
}

export function findDatabase(id: string): (typeof databases)[number] | undefined {
  return databases.find((database) => database.id === id);
}

/** The drivers of a database that has a choice (--driver); none for one with a single driver. */
export function driversOf(database: string): readonly DriverDefinition[] {
  return (findDatabase(database) as DatabaseDefinition | undefined)?.drivers ?? [];
}

/**
 * What a database on a driver needs: its runtime files (the shared ones, then the driver's file)
 * and its packages. No driver, or one the database does not have: the database's default.
 */
export function driverFiles(
  database: string,
  driver?: string,
): { id?: string; runtimeFiles: string[]; dependencies: Dependency[] } {
  const row = findDatabase(database) as DatabaseDefinition | undefined;
  if (!row) throw new Error(`Unknown database: ${database}`);
  const chosen = row.drivers?.find((d) => d.id === driver) ?? row.drivers?.[0];
  const shared = row.driverRuntimeFiles ?? [];
  if (!chosen)
    return { runtimeFiles: [...shared, row.runtimeFile], dependencies: row.dependencies };
  return {
    id: chosen.id,
    runtimeFiles: [...shared, chosen.runtimeFile],
    dependencies: chosen.dependencies,
  };
}

export function findOrm(id: string): (typeof orms)[number] | undefined {
  return orms.find((orm) => orm.id === id);
}
