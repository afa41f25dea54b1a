// Config push over real gRPC on 127.0.0.1: per-node slices, deltas only to affected nodes,
// NACK of a malformed resource.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bodyOf, NODES, res, snapshot, startAgent, startServer, waitFor, type AgentHarness } from './harness.ts';

const base = {
  'node-a': { 'mesh/config': { node: 'node-a' }, 'workload/ns/a1': { ip: '198.18.1.1' }, 'service/ns/shared': { vip: '198.19.0.1' } },
  'node-b': { 'mesh/config': { node: 'node-b' }, 'workload/ns/b1': { ip: '198.18.2.1' }, 'service/ns/shared': { vip: '198.19.0.1' } },
  'node-c': { 'mesh/config': { node: 'node-c' }, 'workload/ns/c1': { ip: '198.18.3.1' } },
};

test('three agents each receive only their node\'s resources; a change reaches only the affected nodes, as a delta', async (t) => {
  const h = await startServer();
  t.after(() => h.server.destroy());
  h.server.setSnapshot(snapshot(base));
  const agents: AgentHarness[] = [];
  for (const n of NODES) agents.push(await startAgent(n, h.port));
  t.after(() => Promise.all(agents.map((a) => a.client.close())));
  await Promise.all(agents.map((a) => a.client.whenSynced()));

  const [a, b, c] = agents;
  assert.deepEqual([...a.client.config().resources.keys()].sort(), ['mesh/config', 'service/ns/shared', 'workload/ns/a1']);
  assert.deepEqual([...b.client.config().resources.keys()].sort(), ['mesh/config', 'service/ns/shared', 'workload/ns/b1']);
  assert.deepEqual([...c.client.config().resources.keys()].sort(), ['mesh/config', 'workload/ns/c1']);
  assert.deepEqual(bodyOf(c.client, 'workload/ns/c1'), { ip: '198.18.3.1' });
  // The server's book matches what each agent holds.
  for (const agent of agents) {
    const node = agent.client.configDump().node;
    const held = new Map([...agent.client.config().resources].map(([k, r]) => [k, r.version]));
    await waitFor(() => sameMap(h.server.ackedVersions(node), held), `${node} acked versions`);
  }

  // Change the shared service (nodes a and b) and remove c's workload.
  h.events.length = 0;
  const pushesBefore = a.configs.length + b.configs.length + c.configs.length;
  h.server.setSnapshot(snapshot({
    ...base,
    'node-a': { ...base['node-a'], 'service/ns/shared': { vip: '198.19.0.2' } },
    'node-b': { ...base['node-b'], 'service/ns/shared': { vip: '198.19.0.2' } },
  }));
  await a.until((s) => (s.get('service/ns/shared')?.body as { vip: string }).vip === '198.19.0.2');
  await b.until((s) => (s.get('service/ns/shared')?.body as { vip: string }).vip === '198.19.0.2');
  await waitFor(() => h.events.filter((e) => e.type === 'ack').length === 2, 'two ACKs');
  const pushed = h.events.filter((e) => e.type === 'pushed');
  assert.deepEqual(pushed.map((e) => e.node).sort(), ['node-a', 'node-b'], 'node-c got nothing');
  for (const e of pushed) assert.deepEqual([e.type === 'pushed' && e.changed, e.type === 'pushed' && e.removed], [1, 0], 'only the changed resource');
  assert.equal(a.configs.length + b.configs.length + c.configs.length, pushesBefore + 2);

  // Now only node-c changes: a removal.
  h.events.length = 0;
  h.server.setSnapshot(snapshot({
    ...base,
    'node-a': { ...base['node-a'], 'service/ns/shared': { vip: '198.19.0.2' } },
    'node-b': { ...base['node-b'], 'service/ns/shared': { vip: '198.19.0.2' } },
    'node-c': { 'mesh/config': { node: 'node-c' } },
  }));
  await c.until((s) => !s.has('workload/ns/c1'));
  await waitFor(() => h.events.some((e) => e.type === 'ack'), 'ACK from node-c');
  assert.deepEqual(h.events.filter((e) => e.type === 'pushed').map((e) => [e.node, e.type === 'pushed' && e.changed, e.type === 'pushed' && e.removed]), [['node-c', 0, 1]]);
  assert.equal(h.server.ackedVersions('node-c')?.has('workload/ns/c1'), false);

  const metrics = await h.registry.getSingleMetricAsString('weft_control_connected_agents');
  assert.match(metrics, /weft_control_connected_agents 3/);
});

test('a malformed resource is NACKed by name; the agent keeps its last good version and applies the rest', async (t) => {
  const h = await startServer();
  t.after(() => h.server.destroy());
  h.server.setSnapshot(snapshot({ 'node-a': { 'mesh/config': { n: 1 }, 'service/ns/web': { vip: '198.19.0.1' }, 'service/ns/db': { vip: '198.19.0.9' } } }));
  const a = await startAgent('node-a', h.port);
  t.after(() => a.client.close());
  await a.client.whenSynced();
  const goodVersion = a.client.config().resources.get('service/ns/web')?.version;

  const nack = h.next((e) => e.type === 'nack');
  h.server.setSnapshot(snapshot({ 'node-a': {
    'mesh/config': { n: 2 },
    'service/ns/web': { vip: '198.19.0.1', bad: 'vip conflicts with ns/db' },
    'service/ns/db': { vip: '198.19.0.9' },
    'workload/ns/new': { ip: '198.18.1.7' },
  } }));
  const event = await nack;
  assert.ok(event.type === 'nack');
  assert.deepEqual(event.rejected.map((r) => r.key), ['service/ns/web']);
  assert.match(event.rejected[0].message, /body\.bad: vip conflicts with ns\/db/);
  assert.match(event.message, /1 of 3 resources refused: service\/ns\/web: body\.bad: vip conflicts/);

  await a.until((s) => s.has('workload/ns/new'));
  const held = a.client.config().resources;
  assert.equal(held.get('service/ns/web')?.version, goodVersion, 'last good version kept');
  assert.deepEqual(held.get('mesh/config')?.body, { n: 2 }, 'the rest of the update applied');
  assert.deepEqual(a.client.configDump().rejected.map((r) => r.key), ['service/ns/web']);

  // The server records it: the refused version is not acked and is remembered.
  const acked = h.server.ackedVersions('node-a');
  assert.equal(acked?.get('service/ns/web'), goodVersion);
  assert.equal(acked?.get('workload/ns/new'), held.get('workload/ns/new')?.version);
  assert.deepEqual(h.server.rejectedVersions('node-a').map((r) => r.key), ['service/ns/web']);
  assert.match(await h.registry.getSingleMetricAsString('weft_control_nacks_total'), /weft_control_nacks_total 1/);

  // A later, unrelated change does not resend the refused version...
  h.events.length = 0;
  h.server.setSnapshot(snapshot({ 'node-a': {
    'mesh/config': { n: 3 },
    'service/ns/web': { vip: '198.19.0.1', bad: 'vip conflicts with ns/db' },
    'service/ns/db': { vip: '198.19.0.9' },
    'workload/ns/new': { ip: '198.18.1.7' },
  } }));
  await h.next((e) => e.type === 'ack');
  const pushed = h.events.filter((e) => e.type === 'pushed');
  assert.deepEqual(pushed.map((e) => e.type === 'pushed' && e.changed), [1], 'only mesh/config, not the refused service again');

  // ...but a fixed version goes out and replaces the kept one.
  h.server.setSnapshot(snapshot({ 'node-a': {
    'mesh/config': { n: 3 },
    'service/ns/web': { vip: '198.19.0.5' },
    'service/ns/db': { vip: '198.19.0.9' },
    'workload/ns/new': { ip: '198.18.1.7' },
  } }));
  await a.until((s) => (s.get('service/ns/web')?.body as { vip: string }).vip === '198.19.0.5');
  assert.deepEqual(a.client.configDump().rejected, []);
  await waitFor(() => h.server.rejectedVersions('node-a').length === 0, 'rejection forgotten');
});

function sameMap(a: ReadonlyMap<string, string> | undefined, b: ReadonlyMap<string, string>): boolean {
  return a !== undefined && a.size === b.size && [...b].every(([k, v]) => a.get(k) === v);
}

test('a node whose slice cannot be computed keeps its config; the others still get theirs', async (t) => {
  let broken = false;
  const h = await startServer(0, {
    resourcesFor: (snap, node) => {
      if (broken && node === 'node-b') throw new Error('model bug');
      return [...(snap.get(node) ?? new Map<string, unknown>())].map(([k, b]) => res(k, b));
    },
  });
  t.after(() => h.server.destroy());
  h.server.setSnapshot(snapshot({ 'node-a': { 'svc/x': { v: 1 } }, 'node-b': { 'svc/x': { v: 1 } } }));
  const a = await startAgent('node-a', h.port);
  const b = await startAgent('node-b', h.port);
  t.after(() => Promise.all([a.client.close(), b.client.close()]));
  await Promise.all([a.client.whenSynced(), b.client.whenSynced()]);
  broken = true;
  h.server.setSnapshot(snapshot({ 'node-a': { 'svc/x': { v: 2 } }, 'node-b': { 'svc/x': { v: 2 } } }));
  await a.until((s) => (s.get('svc/x')?.body as { v: number }).v === 2);
  assert.deepEqual(bodyOf(b.client, 'svc/x'), { v: 1 });
  assert.equal(b.client.connected, true);
});
