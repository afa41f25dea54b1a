// Messages past gRPC's default 4 MiB: a node's first sync carries its whole slice (4.5 MiB
// for 15,000 pods and 1,000 services), and a resync lists every key and version the agent holds.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startAgent, startServer, snapshot } from './harness.ts';

test('a first sync larger than 4 MiB arrives, and so does a resync request larger than 4 MiB', async (t) => {
  // 5,000 resources with 1,000-character names: about 5 MiB both ways.
  const big: Record<string, unknown> = { 'mesh/config': { n: 1 } };
  for (let i = 0; i < 5_000; i++) big[`workload/ns/${String(i).padStart(1000, 'w')}`] = { i };
  const h = await startServer();
  t.after(() => h.server.destroy());
  h.server.setSnapshot(snapshot({ 'node-a': big }));
  const a = await startAgent('node-a', h.port, { backoff: { initialMs: 50, maxMs: 200 } });
  t.after(() => a.client.close());
  const timeout = (what: string) => new Promise<never>((_, reject) => {
    setTimeout(() => reject(new Error(`${what} within 20 s: ${a.client.configDump().lastError}`)), 20_000).unref();
  });
  await Promise.race([a.client.whenSynced(), timeout('no first sync')]);
  assert.equal(a.client.config().resources.size, 5_001);

  // A new control plane on the same port: the agent resyncs by listing what it holds.
  h.server.destroy();
  const h2 = await startServer(h.port);
  t.after(() => h2.server.destroy());
  h2.server.setSnapshot(snapshot({ 'node-a': big }));
  const pushed = await Promise.race([h2.next((e) => e.type === 'pushed', 20_000), timeout('no resync')]);
  assert.ok(pushed.type === 'pushed');
  assert.equal(pushed.changed, 0, 'the server took the agent\'s versions: nothing to resend');
  await h2.next((e) => e.type === 'ack');
});
