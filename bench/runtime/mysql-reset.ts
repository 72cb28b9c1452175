// What resetting a MySQL connection's session state on check-in costs (issue 26, as issue 23
// measured it for PostgreSQL and SQLite), and the ways it could be done, against one server:
//
//   node --import tsx bench/runtime/mysql-reset.ts     (MYSQL_URL, else a throwaway MariaDB)
//
// - per request, as the adapters run one (scope, two statements, release awaited): a request
//   that changed nothing, and one whose first statement was `SET @v` (reset on check-in);
// - per reset, on one mysql2 connection: COM_RESET_CONNECTION alone, with the sql_mode it
//   drops set again (what the runtime does), COM_CHANGE_USER, and a new connection.
// Wall time per operation, and this process's CPU, medians of 5 rounds.
import mysql from 'mysql2';
import { createScope } from '../../src/runtime/runtime.ts';
import { MysqlDatabase } from '../../src/runtime/runtime-mysql.ts';
import { createMysqlTestDatabase } from '../../test/support/mariadb.ts';

const database = await createMysqlTestDatabase();
const url = database.url;

async function measure(name: string, count: number, op: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < count / 5; i++) await op();
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let round = 0; round < 5; round++) {
    const cpu = process.cpuUsage();
    const start = process.hrtime.bigint();
    for (let i = 0; i < count; i++) await op();
    walls.push(Number(process.hrtime.bigint() - start) / count / 1000);
    const used = process.cpuUsage(cpu);
    cpus.push((used.user + used.system) / count);
  }
  const median = (values: number[]) => values.sort((a, b) => a - b)[2]!.toFixed(1);
  console.log(
    `${name.padEnd(48)} ${median(walls).padStart(7)} µs wall ${median(cpus).padStart(7)} µs CPU`,
  );
}

const db = new MysqlDatabase({ uri: url, max: 1 });
const request = (first: string) => async () => {
  const scope = createScope(db);
  try {
    await scope.run(async () => {
      await db.get(first);
      await db.get('SELECT 2 AS two');
    });
  } finally {
    await scope.release();
  }
};
await measure('request, nothing changed', 2000, request('SELECT 1 AS one'));
await measure('request, SET @v (reset on check-in)', 2000, request('SET @v = 1'));
await db.closePool();

const conn = mysql.createConnection({ uri: url }).promise();
await measure('COM_RESET_CONNECTION', 2000, () => conn.reset());
await measure('COM_RESET_CONNECTION, then SET sql_mode', 2000, async () => {
  await conn.reset();
  await conn.query("SET SESSION sql_mode = 'IGNORE_SPACE'");
});
await measure('SELECT 1 (a round trip)', 2000, () => conn.query('SELECT 1'));
await measure('COM_CHANGE_USER', 500, () => conn.changeUser({ user: conn.config.user ?? 'root' }));
await measure('a new connection (connect, quit)', 200, async () => {
  const other = mysql.createConnection({ uri: url }).promise();
  await other.connect();
  await other.end();
});
await conn.end();
await database.drop();
process.exit(0);
