// Leak detection (HikariCP's leakDetectionThreshold), on both databases: a request that keeps its
// connection past the threshold gets one warning naming it and where it checked the connection
// out, then one line when the connection comes back; quick requests and a threshold of 0 are silent.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createScope } from '../../src/runtime/runtime.ts';
import { capturingLogger, kinds, sleep, withDatabase } from './databases.ts';

const THRESHOLD = 100;

for (const kind of kinds) {
  describe(`${kind.name}: leak detection`, () => {
    test('a scope holding its connection past the threshold is reported once, then its return', async () => {
      const logger = capturingLogger();
      const options = { leakDetectionThresholdMillis: THRESHOLD, logger };
      await withDatabase(kind, options, async ({ db }) => {
        const scope = createScope(db, 'GET /x');
        const beforeCheckout = performance.now();
        await scope.run(() => db.get('SELECT 1 AS one')); // the checkout happens here
        await sleep(300);
        assert.equal(logger.warnings.length, 1, `warnings: ${JSON.stringify(logger.warnings)}`);
        const [warning] = logger.warnings;
        assert.match(warning!, /GET \/x/, 'names the request');
        assert.match(warning!, /more than 100 ms/);
        assert.match(warning!, /leaked/);
        assert.match(warning!, /leak\.test\.ts:\d+/, `the stack shows where: ${warning}`);
        await scope.release();
        const heldAtMost = performance.now() - beforeCheckout;
        assert.equal(logger.warnings.length, 2, 'one line when it comes back');
        assert.match(logger.warnings[1]!, /GET \/x returned its database connection after \d+ ms/);
        const late = Number(/after (\d+) ms/.exec(logger.warnings[1]!)![1]);
        assert.ok(late >= 280 && late <= heldAtMost + 1, `reported as held ${late} ms`);
        assert.deepEqual(logger.errors, []);
      });
    });

    test('a handler written with .then() (no async function) is still located', async () => {
      const logger = capturingLogger();
      const options = { leakDetectionThresholdMillis: THRESHOLD, logger };
      await withDatabase(kind, options, async ({ db }) => {
        const scope = createScope(db, 'GET /callbacks');
        // As an Express or node:http handler without async/await: once the checkout completes,
        // nothing of this function is left on the stack.
        function route(done: () => void): void {
          void db.get('SELECT 1 AS one').then(() => done());
        }
        await new Promise<void>((resolve) => scope.run(() => setTimeout(() => route(resolve), 1)));
        await sleep(200);
        await scope.release();
        assert.equal(logger.warnings.length, 2, `warnings: ${JSON.stringify(logger.warnings)}`);
        assert.match(logger.warnings[0]!, /at route \(.*leak\.test\.ts:\d+/, logger.warnings[0]);
      });
    });

    test('an eager checkout is reported with the stack of scope.connect()', async () => {
      const logger = capturingLogger();
      const options = { leakDetectionThresholdMillis: THRESHOLD, logger };
      await withDatabase(kind, options, async ({ db }) => {
        const scope = createScope(db, 'POST /upload');
        await scope.connect();
        await sleep(200);
        await scope.release();
        assert.equal(logger.warnings.length, 2, `warnings: ${JSON.stringify(logger.warnings)}`);
        assert.match(logger.warnings[0]!, /POST \/upload/);
        assert.match(logger.warnings[0]!, /leak\.test\.ts:\d+/);
      });
    });

    test('a scope that returns its connection in time is not reported', async () => {
      const logger = capturingLogger();
      // Far longer than two statements take on a loaded machine, so "in time" is certain.
      const threshold = 1000;
      const options = { leakDetectionThresholdMillis: threshold, logger };
      await withDatabase(kind, options, async ({ db }) => {
        for (let i = 0; i < 5; i++) {
          const scope = createScope(db, `GET /quick/${i}`);
          await scope.run(async () => {
            await db.get('SELECT 1 AS one');
            await db.get('SELECT 2 AS two');
          });
          await scope.release();
        }
        // A connection checked out again by a later request starts a new clock.
        await sleep(threshold * 1.5);
        assert.deepEqual(logger.warnings, []);
      });
    });

    test('0 turns it off (and it is off by default)', async () => {
      for (const leakDetectionThresholdMillis of [0, undefined]) {
        const logger = capturingLogger();
        await withDatabase(kind, { leakDetectionThresholdMillis, logger }, async ({ db }) => {
          const scope = createScope(db, 'GET /slow');
          await scope.run(() => db.get('SELECT 1 AS one'));
          await sleep(250);
          await scope.release();
          assert.deepEqual(logger.warnings, []);
        });
      }
    });
  });
}
