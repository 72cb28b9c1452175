// The load tests' server harness (test/support/apps.ts) never leaves a process behind, even when
// a server fails to start: the case that once left a cluster and PgBouncer running for good.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { type Framework, startServer } from '../support/apps.ts';

/** Our direct children, from /proc (Linux). */
function children(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[1]);
      if (parent === process.pid) pids.push(Number(entry));
    } catch {
      // It exited while we looked.
    }
  }
  return pids;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('a cluster whose workers never listen is stopped when the start times out', {
  skip: process.platform === 'linux' ? false : 'reads /proc',
}, async () => {
  const before = new Set(children());
  // Workers of an unknown framework crash at once; the cluster primary waits for them forever.
  const start = startServer(
    'no-such-framework' as Framework,
    'generated',
    'sqlite',
    {},
    {
      workers: 2,
      startMillis: 2000,
    },
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  const started = children().filter((pid) => !before.has(pid));
  assert.equal(started.length, 1, 'the cluster primary should be running while it starts');
  await assert.rejects(start, /did not start within 2 s/);
  assert.equal(alive(started[0]!), false, 'the cluster primary outlived the failed start');
  assert.deepEqual(
    children().filter((pid) => !before.has(pid)),
    [],
  );
});
