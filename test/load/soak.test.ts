// The short version of test/support/soak.ts (`npm run soak` runs it longer): every target on each database under a mixed load
// (successes, handler errors, client aborts mid-handler, transactions with an await inside, 404s)
// for a few seconds each, then no leaks of any kind.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { DatabaseId } from '../../src/cli/targets.ts';
import { mysqlOff, mysqlSkipReason } from '../runtime/databases.ts';
import { type Framework, generate } from '../support/apps.ts';
import { formatReport, soak } from '../support/soak.ts';

const frameworks: Framework[] = [
  'express',
  'fastify',
  'koa',
  'hono',
  'node-http',
  'fetch',
  'hooks',
  'nestjs',
];
const seconds = Number(process.env.SOAK_SECONDS ?? 4);

// MySQL where the run has a server (the newest Node line), as in the other suites.
const databases: DatabaseId[] = mysqlOff ? ['sqlite', 'postgres'] : ['sqlite', 'postgres', 'mysql'];

for (const database of databases) {
  const skip = database === 'mysql' ? mysqlSkipReason : undefined;
  describe(`soak on ${database}`, { skip }, () => {
    before(() => generate(database));
    for (const framework of frameworks) {
      test(`${framework}: ${seconds} s of mixed load leaves nothing behind`, async (t) => {
        const report = await soak({ framework, database, seconds, concurrency: 16, poolMax: 5 });
        t.diagnostic(formatReport(report));
        assert.ok(report.requests > 100, `only ${report.requests} requests were served`);
        for (const kind of ['ok', 'error', 'abort', 'transaction', 'notFound'] as const) {
          assert.ok(report.byKind[kind] > 0, `no ${kind} requests were sent`);
        }
        assert.deepEqual(report.unexpected, []);
        assert.equal(report.hung, 0, 'requests hung past the acquire timeout');
        assert.equal(report.leaks.inUse, 0, 'connections still checked out');
        // PostgreSQL's pg_stat_activity, MySQL's PROCESSLIST and INNODB_TRX, or the SQLite
        // connections the server's pool opened.
        assert.equal(report.leaks.idleInTransaction, 0, 'connections idle in transaction');
        assert.ok(report.leaks.maxConnections > 0, 'the monitor saw no connection at all');
        assert.ok(
          report.leaks.maxConnections <= report.leaks.poolMax,
          `${database} had ${report.leaks.maxConnections} connections open for a pool of ${report.leaks.poolMax}`,
        );
        // The heap is sampled after a full GC; a leak per request (thousands of requests) would
        // grow it by far more than doubling, which noise on a busy machine does not reach.
        assert.ok(report.heap.growth < 1, `heap grew ${(report.heap.growth * 100).toFixed(0)}%`);
      });
    }
  });
}
