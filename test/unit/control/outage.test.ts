// The control plane going away and coming back, over real sockets: agents keep serving,
// reconnect with backoff, and resync by versions so only the difference is sent.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { systemScheduler, type Scheduler } from '../../../src/control/timing.ts';
import { NODES, snapshot, startAgent, startServer, testPki, waitFor, type AgentHarness } from './harness.ts';

const content = (vip: string) => Object.fromEntries(NODES.map((n) => [n, {
  'mesh/config': { node: n }, [`workload/ns/${n}`]: { ip: '198.18.0.1' }, 'service/ns/web': { vip },
}]));

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * The system scheduler, recording the reconnect delays asked for (the node certificate's
 * renewal timer, hours away, shares the scheduler and is left out).
 */
function recordingScheduler(): Scheduler & { delays: number[] } {
  const delays: number[] = [];
  return { delays, schedule: (ms, fn) => { if (ms < 60_000) delays.push(ms); return systemScheduler.schedule(ms, fn); } };
}

test('server killed: agents keep their config, reconnect with backoff, and resync sending only the difference', async (t) => {
  const first = await startServer();
  const port = first.port;
  t.after(() => first.server.destroy());
  first.server.setSnapshot(snapshot(content('198.19.0.1')));
  const schedulers = NODES.map(() => recordingScheduler());
  const agents: AgentHarness[] = [];
  for (const [i, n] of NODES.entries()) agents.push(await startAgent(n, port, { scheduler: schedulers[i], backoff: { initialMs: 20, maxMs: 160 } }));
  t.after(() => Promise.all(agents.map((a) => a.client.close())));
  await Promise.all(agents.map((a) => a.client.whenSynced()));
  const before = agents.map((a) => a.client.config());

  first.server.destroy();
  await waitFor(() => agents.every((a) => !a.client.connected), 'agents to notice the outage');
  // Out of reach for a while: several retries, each failing.
  await waitFor(() => schedulers.every((s) => s.delays.length >= 5), 'retries', 10_000);
  for (const [i, a] of agents.entries()) {
    assert.equal(a.client.config().resources, before[i].resources, 'the same config object is served during the outage');
    assert.equal(a.client.config().version, before[i].version);
    assert.equal(a.client.configDump().synced, true);
    assert.match(a.client.configDump().lastError ?? '', /UNAVAILABLE|ECONNREFUSED|No connection/i);
  }
  // Exponential with equal jitter, capped: retry n waits between step/2 and step, step = min(160, 20 * 2^n).
  const delays = schedulers[0].delays;
  for (const [n, d] of delays.slice(0, 6).entries()) {
    const step = Math.min(160, 20 * 2 ** n);
    assert.ok(d >= step / 2 && d <= step, `retry ${n} waited ${d} ms, expected ${step / 2}-${step}`);
  }
  assert.ok(Math.max(...delays) <= 160, 'capped');

  // Back, with the same content: every agent resubscribes and gets an empty response.
  const second = await startServer(port);
  t.after(() => second.server.destroy());
  second.server.setSnapshot(snapshot(content('198.19.0.1')));
  await waitFor(() => agents.every((a) => a.client.connected), 'reconnect', 10_000);
  await waitFor(() => second.events.filter((e) => e.type === 'ack').length === 3, 'three ACKs');
  const resync = second.events.filter((e) => e.type === 'pushed');
  assert.deepEqual(resync.map((e) => e.type === 'pushed' && [e.changed, e.removed]), [[0, 0], [0, 0], [0, 0]], 'versions matched: nothing resent');
  for (const [i, a] of agents.entries()) assert.equal(a.client.config().resources, before[i].resources, 'config untouched by the resync');
  // The new server learned the agents' versions from the subscription.
  assert.equal(second.server.ackedVersions('node-b')?.size, 3);

  // Down again; back with one change: only that resource travels.
  second.server.destroy();
  await waitFor(() => agents.every((a) => !a.client.connected), 'second outage');
  const third = await startServer(port);
  t.after(() => third.server.destroy());
  third.server.setSnapshot(snapshot(content('198.19.0.2')));
  await Promise.all(agents.map((a) => a.until((s) => (s.get('service/ns/web')?.body as { vip: string }).vip === '198.19.0.2', 10_000)));
  assert.deepEqual(third.events.filter((e) => e.type === 'pushed').map((e) => e.type === 'pushed' && [e.changed, e.removed]), [[1, 0], [1, 0], [1, 0]]);
});

test('an agent started while the control plane is down waits, then syncs', async (t) => {
  const port = await freePort();
  const scheduler = recordingScheduler();
  const a = await startAgent('node-a', port, { scheduler, backoff: { initialMs: 20, maxMs: 100 } });
  t.after(() => a.client.close());
  let synced = false;
  void a.client.whenSynced().then(() => { synced = true; });
  await waitFor(() => scheduler.delays.length >= 3, 'a few failed attempts');
  assert.equal(synced, false);
  assert.equal(a.client.config().version, '');
  assert.equal(a.client.config().resources.size, 0);
  assert.match(a.client.configDump().lastError ?? '', /node certificate|bootstrap/i);
  await assert.rejects(a.client.sign('csr', 'spiffe://cluster.local/ns/x/sa/y'), /no node certificate/);

  const h = await startServer(port);
  t.after(() => h.server.destroy());
  // Listening but no snapshot yet: the agent subscribes and waits for the first one.
  await h.next((e) => e.type === 'subscribed' && e.node === 'node-a', 5_000);
  assert.equal(synced, false);
  h.server.setSnapshot(snapshot(content('198.19.0.1')));
  await a.client.whenSynced();
  assert.deepEqual([...a.client.config().resources.keys()].sort(), ['mesh/config', 'service/ns/web', 'workload/ns/node-a']);
  assert.notEqual(a.client.config().version, '');
  assert.equal(a.configs.length, 1);
});

test('the control plane returns with a new CA: the agent bootstraps again from the configured bundle and resyncs', async (t) => {
  const old = await startServer();
  const port = old.port;
  t.after(() => old.server.destroy());
  old.server.setSnapshot(snapshot(content('198.19.0.1')));
  let bundle = (await testPki()).trustBundlePem;
  const a = await startAgent('node-a', port, { trustBundlePem: () => bundle, backoff: { initialMs: 10, maxMs: 40 } });
  t.after(() => a.client.close());
  await a.client.whenSynced();

  old.server.destroy();
  bundle = (await testPki('control-rotated')).trustBundlePem; // e.g. the CA file was replaced
  const rotated = await startServer(port, {}, 'control-rotated');
  t.after(() => rotated.server.destroy());
  rotated.server.setSnapshot(snapshot(content('198.19.0.3')));
  await a.until((s) => (s.get('service/ns/web')?.body as { vip: string }).vip === '198.19.0.3', 10_000);
  assert.equal(rotated.server.ackedVersions('node-a')?.size, 3);
});

test('close() is idempotent and stops reconnecting', async (t) => {
  const port = await freePort();
  const scheduler = recordingScheduler();
  const a = await startAgent('node-a', port, { scheduler, backoff: { initialMs: 10, maxMs: 20 } });
  await waitFor(() => scheduler.delays.length >= 2, 'attempts');
  await a.client.close();
  await a.client.close();
  const attempts = scheduler.delays.length;
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(scheduler.delays.length <= attempts + 1, 'no retry loop after close');
  assert.throws(() => a.client.start(), /closed/);
  t.diagnostic(`attempts before close: ${attempts}`);
});
