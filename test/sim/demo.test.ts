// `npm start` runs `weft demo`: a 2-node mesh with a client calling services by VIP. The
// demo must work from its very first request and leave nothing behind.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { needsRoot } from '../support/root.ts';
import { uniqueName, weft } from '../support/sim.ts';

test('the demo: every request through the mesh answers, and teardown is complete', async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter'])) return;
  const name = uniqueName('d');
  t.after(async () => { await weft(['sim', 'down', '--name', name]); });
  const r = await weft(['demo', '--name', name, '--duration', '6']);
  assert.equal(r.status, 0, r.stderr);
  const calls = r.stdout.split('\n').filter((l) => / -> http:\/\/198\.19\./.test(l));
  assert.ok(calls.length >= 3, `the client made calls:\n${r.stdout}`);
  for (const call of calls) assert.match(call, /hello from (echo|hello)-\d-\d ns=demo node=node-\d client=198\.18\.\d\.1:/, 'answered through the agent');
  assert.match(r.stdout, /-- mesh: node-1: \d+ outbound connections \(\d+ over mutual TLS\)/);
  assert.match(r.stdout, /metrics: +nsenter --net=\/run\/netns\/weft-\w+-n-node-1 curl -s http:\/\/198\.18\.1\.1:15020\/metrics/);
  assert.doesNotMatch(execFileSync('ip', ['netns', 'list']).toString(), new RegExp(`weft-${name}-`));
});
