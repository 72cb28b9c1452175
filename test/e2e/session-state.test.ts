// End to end, the per-request settings pattern of README's "Session state" section: a generated
// Express + PostgreSQL project (with both ORM bindings, TypeScript, type-checked under strict)
// whose middleware after the adapter sets the request's user with
// `select set_config('app.user_id', $1, false)`, on a real row-level-security policy keyed on
// that setting. The app logs in as a role of its own (RLS does not apply to superusers, nor,
// without FORCE, to the table's owner) on a pool of 2. Under 80 concurrent requests of two users
// and of anonymous clients, each request sees only its user's rows, through db, Kysely and
// Drizzle and inside db.atomic(); an anonymous request sees none, also when it gets a connection
// a user's request just had (what a pool without the reset gets wrong: that user's rows).
//
// MySQL has no row-level security: the same app there keys its queries on a user variable set
// with `SET @app_user_id = ?`, and a user's request also leaves what the reset must clear on
// its connection: a `SET SESSION`, a temporary table, a GET_LOCK(). Each request first reads
// what it found on its connection: no user variable, the server's session value, no lock held
// by it; its CREATE TEMPORARY TABLE would fail on a table left over. Runs where the run has a
// MySQL server (the newest Node line).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { mysqlOff, mysqlSkipReason } from '../runtime/databases.ts';
import { createMysqlTestDatabase, mysqlAdmin } from '../support/mariadb.ts';
import { createTestDatabase, postgresUrl } from '../support/postgres.ts';
import { installDependencies, linkDependencies } from './support/deps.ts';
import {
  generatedProject,
  type Project,
  type RunningApp,
  startApp,
  typeCheck,
} from './support/project.ts';

/** README's policy: a row is visible when its owner is the request's user; none without one. */
const schema = `
  CREATE TABLE notes (id serial PRIMARY KEY, owner_id int NOT NULL, body text NOT NULL);
  ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
  CREATE POLICY notes_of_the_user ON notes
    USING (owner_id = nullif(current_setting('app.user_id', true), '')::int);
  INSERT INTO notes (owner_id, body) VALUES (1, 'a'), (1, 'b'), (2, 'c'), (2, 'd'), (3, 'e');
`;

const app = `import type { AddressInfo } from 'node:net';
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core';
import express from 'express';
import type { Generated } from 'kysely';
import { orm as drizzle } from './db/drizzle.js';
import { dbHooks } from './db/express.js';
import { db } from './db/index.js';
import { orm as kysely } from './db/kysely.js';

declare module './db/kysely.js' {
  interface Tables {
    notes: { id: Generated<number>; owner_id: number; body: string };
  }
}
const notes = pgTable('notes', {
  id: serial('id').primaryKey(),
  ownerId: integer('owner_id').notNull(),
  body: text('body').notNull(),
});

const app = express();
// Stands in for the app's authentication, which knows the user from a verified session.
app.use((req, res, next) => {
  res.locals.userId = req.get('x-user-id');
  next();
});
// README's code. After the adapter, so that it runs on the request's connection: every
// statement of this request sees app.user_id, and the next request on that connection does not.
app.use(dbHooks());
app.use(async (_req, res, next) => {
  const userId = res.locals.userId; // set by your authentication, from a verified session
  if (userId !== undefined) await db.run("select set_config('app.user_id', $1, false)", [userId]);
  next();
});

type Owners = { owner_id: number }[];
const reads: Record<string, () => Promise<Owners>> = {
  db: () => db.query<{ owner_id: number }>('select owner_id from notes'),
  kysely: () => kysely.selectFrom('notes').select('owner_id').execute(),
  drizzle: () => drizzle.select({ owner_id: notes.ownerId }).from(notes),
  atomic: () =>
    db.atomic(async () => [
      ...(await db.query<{ owner_id: number }>('select owner_id from notes')),
      ...(await kysely.selectFrom('notes').select('owner_id').execute()),
      ...(await drizzle.select({ owner_id: notes.ownerId }).from(notes)),
    ]),
};

app.get('/notes/:via', async (req, res) => {
  // Long enough for the 80 requests to queue for the pool's 2 connections and take turns.
  await db.run('select pg_sleep(0.005)');
  const rows = await reads[String(req.params.via)]!();
  const pid = await db.get<{ pid: number }>('select pg_backend_pid() as pid');
  res.json({ pid: pid!.pid, owners: [...new Set(rows.map((row) => row.owner_id))].sort() });
});

app.get('/whoami', async (_req, res) => {
  res.json(
    await db.get(
      "select current_user as role, rolsuper as superuser, rolbypassrls as bypass, (select tableowner from pg_tables where tablename = 'notes') as owner from pg_roles where rolname = current_user",
    ),
  );
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(\`listening on http://127.0.0.1:\${(server.address() as AddressInfo).port}\`);
});
process.once('SIGTERM', () => server.close(() => void db.closePool()));
`;

const mysqlApp = `import type { AddressInfo } from 'node:net';
import { sql as drizzleSql } from 'drizzle-orm';
import { int, mysqlTable, serial, text } from 'drizzle-orm/mysql-core';
import express from 'express';
import { type Generated, sql } from 'kysely';
import { orm as drizzle } from './db/drizzle.js';
import { dbHooks } from './db/express.js';
import { db } from './db/index.js';
import { orm as kysely } from './db/kysely.js';

declare module './db/kysely.js' {
  interface Tables {
    notes: { id: Generated<number>; owner_id: number; body: string };
  }
}
const notes = mysqlTable('notes', {
  id: serial('id').primaryKey(),
  ownerId: int('owner_id').notNull(),
  body: text('body').notNull(),
});

const app = express();
app.use((req, res, next) => {
  res.locals.userId = req.get('x-user-id');
  next();
});
app.use(dbHooks());
app.use(async (_req, res, next) => {
  // What the request found on its connection, before it changes anything.
  res.locals.found = await db.get(
    "SELECT @app_user_id AS variable, @@SESSION.wait_timeout = @@GLOBAL.wait_timeout AS serverDefault, IS_USED_LOCK(CONCAT('cdh-', CONNECTION_ID())) AS lockedBy",
  );
  const userId = res.locals.userId;
  if (userId !== undefined) {
    await db.run('SET @app_user_id = ?', [userId]);
    // What a request may leave behind: the reset clears it before the next request.
    await db.run('SET SESSION wait_timeout = 1234');
    await db.run('CREATE TEMPORARY TABLE scratch (v int)');
    await db.get("SELECT GET_LOCK(CONCAT('cdh-', CONNECTION_ID()), 0) AS locked");
  }
  next();
});

type Owners = { owner_id: number }[];
const mine = 'SELECT owner_id FROM notes WHERE owner_id = @app_user_id';
const reads: Record<string, () => Promise<Owners>> = {
  db: () => db.query<{ owner_id: number }>(mine),
  kysely: () =>
    kysely.selectFrom('notes').select('owner_id').where('owner_id', '=', sql<number>\`@app_user_id\`).execute(),
  drizzle: () =>
    drizzle
      .select({ owner_id: notes.ownerId })
      .from(notes)
      .where(drizzleSql\`\${notes.ownerId} = @app_user_id\`),
  atomic: () =>
    db.atomic(async () => [
      ...(await db.query<{ owner_id: number }>(mine)),
      ...(await kysely.selectFrom('notes').select('owner_id').where('owner_id', '=', sql<number>\`@app_user_id\`).execute()),
    ]),
};

app.get('/notes/:via', async (req, res) => {
  // Long enough for the 80 requests to queue for the pool's 2 connections and take turns.
  await db.run('DO SLEEP(0.005)');
  const rows = await reads[String(req.params.via)]!();
  const id = await db.get<{ id: number }>('SELECT CONNECTION_ID() AS id');
  res.json({
    pid: id!.id,
    owners: [...new Set(rows.map((row) => row.owner_id))].sort(),
    found: res.locals.found,
  });
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(\`listening on http://127.0.0.1:\${(server.address() as AddressInfo).port}\`);
});
process.once('SIGTERM', () => server.close(() => void db.closePool()));
`;

const role = `cdh_rls_app_${randomBytes(4).toString('hex')}`;
const password = 'cdh-rls-app';
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let running: RunningApp | undefined;
const removeProjects: (() => void)[] = [];

async function asAdmin(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

before(async () => {
  installDependencies();
  await asAdmin(await postgresUrl(), `CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  database = await createTestDatabase();
  await asAdmin(
    database.url,
    `${schema}
    GRANT SELECT ON notes TO ${role};`,
  );
});

after(async () => {
  await running?.stop();
  for (const remove of removeProjects) remove();
  await database?.drop();
  await asAdmin(await postgresUrl(), `DROP ROLE IF EXISTS ${role}`);
});

/** The generated Express project with both ORMs, a pool of 2 and `source` as its app, type-checked. */
async function project(db: 'postgres' | 'mysql', source: string): Promise<Project> {
  const { dir, files, write } = await generatedProject('e2e-session-', 'ts', {
    targets: ['express'],
    orms: ['kysely', 'drizzle'],
    database: db,
  });
  const generated: Project = {
    dir,
    ext: '.ts',
    files,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  removeProjects.push(generated.remove);
  const index = files.get('src/db/index.ts')!;
  assert.match(index, /\n {2}max: 10,\n/);
  write('src/db/index.ts', index.replace(/\n {2}max: 10,\n/, '\n  max: 2,\n'));
  write('src/app.ts', source);
  write(
    'package.json',
    `${JSON.stringify({ name: 'e2e-session', private: true, type: 'module' })}\n`,
  );
  write(
    'tsconfig.json',
    `${JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        lib: ['ES2022'],
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        verbatimModuleSyntax: true,
        types: ['node'],
      },
      include: ['src'],
    })}\n`,
  );
  linkDependencies(dir);
  const errors = await typeCheck(generated);
  assert.equal(errors, undefined, `tsc --strict:\n${errors}`);
  return generated;
}

interface Reply {
  pid: number;
  owners: number[];
  found?: unknown;
}

/** GET `path` as `userId` (none: anonymous); must answer 200. */
async function get(app: RunningApp, path: string, userId?: string): Promise<Reply> {
  const reply = await fetch(`${app.url}${path}`, {
    headers: userId === undefined ? {} : { 'x-user-id': userId },
  });
  const body = await reply.text();
  assert.equal(reply.status, 200, `${path}: ${body}\n${app.output()}`);
  return JSON.parse(body) as Reply;
}

/**
 * 80 concurrent requests of users 1 and 2 and of anonymous clients through each of `vias`, then
 * anonymous ones one at a time: each sees only its user's rows, and `check` holds for each.
 */
async function requestsTakingTurns(
  app: RunningApp,
  vias: string[],
  check: (reply: Reply, what: string) => void = () => {},
): Promise<void> {
  const requests: { via: string; user?: string }[] = [];
  for (let i = 0; i < 20; i++) {
    for (const via of vias) requests.push({ via, user: i % 2 === 0 ? '1' : '2' });
    if (i % 4 === 0) requests.push({ via: vias[i % vias.length]! }); // anonymous
  }
  const pids = new Set<number>();
  const replies = await Promise.all(
    requests.map(async ({ via, user }) => ({
      via,
      user,
      ...(await get(app, `/notes/${via}`, user)),
    })),
  );
  for (const reply of replies) {
    pids.add(reply.pid);
    const what = `${reply.via}, user ${reply.user ?? 'none'}`;
    assert.deepEqual(reply.owners, reply.user === undefined ? [] : [Number(reply.user)], what);
    check(reply, what);
  }
  assert.equal(pids.size, 2, 'the two connections took turns');

  // One at a time now: each connection last served a user, and an anonymous request sees nothing.
  for (const via of [...vias, ...vias]) {
    const reply = await get(app, `/notes/${via}`);
    assert.deepEqual(reply.owners, [], `${via}, anonymous after a user`);
    check(reply, `${via}, anonymous after a user`);
  }
}

test('express + PostgreSQL: a per-request setting keys row-level security, and stays in its request', async () => {
  const generated = await project('postgres', app);
  const url = new URL(database.url);
  url.username = role;
  url.password = password;
  running = await startApp(generated, 'app', { DATABASE_URL: url.toString() });

  // The policy applies to the app: it is neither a superuser nor the table's owner.
  assert.deepEqual(await get(running, '/whoami'), {
    role,
    superuser: false,
    bypass: false,
    owner: 'postgres',
  });
  await requestsTakingTurns(running, ['db', 'kysely', 'drizzle', 'atomic']);

  assert.equal(await running.stop(), 0, `the app did not shut down cleanly:\n${running.output()}`);
  assert.doesNotMatch(running.output(), /could not reset|could not return/);
});

// Not registered on the lines without MySQL (TEST_MYSQL=off), as in the other suites.
if (!mysqlOff) {
  test('express + MySQL: a user variable keys the queries, and nothing a request set outlives it', {
    skip: mysqlSkipReason,
  }, async () => {
    const mysql = await createMysqlTestDatabase();
    try {
      await mysqlAdmin(mysql.url, async (conn) => {
        await conn.query(
          'CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, owner_id INT NOT NULL, body TEXT NOT NULL)',
        );
        await conn.query(
          "INSERT INTO notes (owner_id, body) VALUES (1, 'a'), (1, 'b'), (2, 'c'), (2, 'd'), (3, 'e')",
        );
      });
      const generated = await project('mysql', mysqlApp);
      const app = await startApp(generated, 'app', { DATABASE_URL: mysql.url });
      try {
        await requestsTakingTurns(app, ['db', 'kysely', 'drizzle', 'atomic'], (reply, what) => {
          // A request's own CREATE TEMPORARY TABLE answered 200: no table was left over.
          assert.deepEqual(
            reply.found,
            { variable: null, serverDefault: 1, lockedBy: null },
            `${what}: found state a request before it left`,
          );
        });
        assert.equal(await app.stop(), 0, `the app did not shut down cleanly:\n${app.output()}`);
        assert.doesNotMatch(app.output(), /could not reset|could not return/);
      } finally {
        await app.stop();
      }
    } finally {
      await mysql.drop();
    }
  });
}
