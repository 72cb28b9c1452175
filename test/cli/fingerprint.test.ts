import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fingerprint } from '../../src/cli/fingerprint.ts';

test('fingerprint() is cyrb53: the reference values, as 14 hex digits', () => {
  // From cyrb53's own documentation (bryc/code, jshash/experimental/cyrb53.js).
  const reference = { a: 7929297801672961, b: 8684336938537663, revenge: 4051478007546757 };
  for (const [text, value] of Object.entries(reference)) {
    assert.equal(fingerprint(text), value.toString(16).padStart(14, '0'));
  }
  assert.notEqual(fingerprint('revenge'), fingerprint('revenue'));
  assert.match(fingerprint(''), /^[0-9a-f]{14}$/);
});
