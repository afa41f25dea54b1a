import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, diffNodeResources, nodeResources, nodeSlice, resourceVersion, ResourceCache, type NodeResource } from '../../../src/model/node-slice.ts';
import { decodeNodeResources } from '../../../src/model/resource-codec.ts';
import { meshStateFromContent } from '../../../src/model/state.ts';
import { authorize, type AuthorizationRequest } from '../../../src/model/authorize.ts';
import { buildMeshState } from '../../../src/model/state.ts';
import { parseManifests } from '../../../src/model/manifests.ts';
import { BASE_DOCS, parsed, pod, policy, state, yamlOf } from './fixture.ts';

const POLICIES = [
  policy('shop', 'db-only-web', { selector: { matchLabels: { app: 'db' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }] }] }),
  policy('weft-system', 'global', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['198.18.66.0/24'] } }] }] }),
  policy('legacy', 'elsewhere', { rules: [{}] }),
];

test('a node slice holds its workloads, remote peers without labels, all services, its policies and service accounts', () => {
  const sl = nodeSlice(state(POLICIES), 'n2');
  assert.deepEqual(sl.workloads.map((w) => w.key), ['shop/db-1', 'shop/web-2']);
  assert.deepEqual(sl.peers.map((w) => w.key), ['legacy/new-1', 'legacy/old-1', 'shop/batch', 'shop/web-1']);
  assert.ok(sl.peers.every((w) => Object.keys(w.labels).length === 0));
  assert.deepEqual(sl.services.map((s) => s.key), ['shop/db', 'shop/web']);
  assert.deepEqual(sl.policies.map((p) => `${p.namespace}/${p.name}`), ['shop/db-only-web', 'weft-system/global']);
  assert.deepEqual(sl.serviceAccounts.map((a) => a.identity), ['spiffe://cluster.local/ns/shop/sa/db', 'spiffe://cluster.local/ns/shop/sa/web']);
});

test('a node without enrolled workloads gets no services and no peers', () => {
  const s = buildMeshState(parseManifests([{ path: 'x', text: yamlOf([...BASE_DOCS, pod('legacy', 'lone', { node: 'n7', ip: '198.18.7.1' })]) }]));
  const sl = nodeSlice(s, 'n7');
  assert.deepEqual(sl.workloads.map((w) => w.key), ['legacy/lone']);
  assert.deepEqual([sl.peers.length, sl.services.length, sl.policies.length, sl.serviceAccounts.length], [0, 0, 0, 0]);
});

test('resources are keyed type/name and versioned by content, independent of input order', () => {
  const a = nodeResources(state(POLICIES), 'n2');
  const reordered = buildMeshState(parseManifests([{ path: 'y', text: yamlOf([...POLICIES].reverse().concat([...BASE_DOCS].reverse())) }]));
  const b = nodeResources(reordered, 'n2');
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [k, r] of a) assert.equal(b.get(k)?.version, r.version, k);
  assert.deepEqual([...a.keys()].filter((k) => !k.startsWith('workload/')), [
    'mesh/config', 'service/shop/db', 'service/shop/web', 'authorization/shop/db-only-web', 'authorization/weft-system/global',
    'identity/shop/db', 'identity/shop/web',
  ]);
  const r = a.get('service/shop/db');
  assert.equal(r?.version, resourceVersion(r?.body));
  assert.match(r?.version ?? '', /^[0-9a-f]{16}$/);
  const wire: unknown = JSON.parse(JSON.stringify(r?.body));
  assert.equal(canonicalJson(wire), canonicalJson(r?.body), 'the body hashes the same after a trip through JSON');
  assert.ok(Object.isFrozen(r?.body));
});

test('a shared ResourceCache hashes each object once and gives the same resources', () => {
  const s = state(POLICIES);
  const cache = new ResourceCache();
  const a = nodeResources(s, 'n1', cache);
  const b = nodeResources(s, 'n2', cache);
  assert.equal(a.get('service/shop/web'), b.get('service/shop/web'), 'the same resource object for both nodes');
  assert.equal(a.get('workload/shop/db-1'), nodeResources(s, 'n1', cache).get('workload/shop/db-1'), 'peer form cached too');
  for (const [k, r] of nodeResources(s, 'n2')) assert.equal(b.get(k)?.version, r.version, k);
});

test('a diff carries only what changed for that node', () => {
  const before = nodeResources(state(POLICIES), 'n2');
  // A new pod on n1 behind the web service changes service/shop/web and adds one peer; nothing else.
  const after = nodeResources(state([...POLICIES, pod('shop', 'web-3', { sa: 'web', node: 'n1', ip: '198.18.1.11', labels: { app: 'web' } })]), 'n2');
  const d = diffNodeResources(before, after);
  assert.deepEqual(d.changed.map((r) => `${r.type}/${r.name}`), ['service/shop/web', 'workload/shop/web-3']);
  assert.deepEqual(d.removed, []);
  const back = diffNodeResources(after, before);
  assert.deepEqual(back.changed.map((r) => r.name), ['shop/web']);
  assert.deepEqual(back.removed, ['workload/shop/web-3']);
  assert.deepEqual(diffNodeResources(before, before), { changed: [], removed: [] });
});

test('the agent rebuilds an equivalent state from its resources', () => {
  const full = state(POLICIES);
  // Through JSON, as on the wire: undefined fields vanish, key order may differ; versions still match.
  const wire = JSON.parse(JSON.stringify([...nodeResources(full, 'n2').values()])) as NodeResource[];
  const decoded = decodeNodeResources(wire);
  assert.deepEqual(decoded.problems, []);
  assert.equal(decoded.node, 'n2');
  const agent = meshStateFromContent(decoded.content);
  assert.equal(agent.workloadByIp('198.18.1.10')?.node, 'n1');
  const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
  assert.deepEqual(agent.endpoints('shop/db', 5432), plain(full.endpoints('shop/db', 5432)));
  assert.equal(agent.serviceByVip('198.19.0.10', 80)?.service.key, 'shop/web');
  assert.ok(agent.hasServiceAccountOnNode('n2', 'shop', 'db'));
  const db = agent.workload('shop/db-1');
  assert.ok(db);
  for (const [principal, ip, allowed] of [
    ['spiffe://cluster.local/ns/shop/sa/web', '198.18.1.10', true],
    ['spiffe://cluster.local/ns/shop/sa/other', '198.18.1.10', false],
    ['spiffe://cluster.local/ns/shop/sa/web', '198.18.66.1', false],
  ] as const) {
    const req: AuthorizationRequest = { sourcePrincipal: principal, sourceNamespace: 'shop', sourceIp: ip, destinationWorkload: db, destinationPort: 5432 };
    assert.equal(authorize(agent, req).allowed, allowed);
    assert.deepEqual(authorize(agent, req), authorize(full, { ...req, destinationWorkload: full.workload('shop/db-1') ?? assert.fail() }));
  }
});

test('a bad resource is rejected alone, naming its key', () => {
  const rs = [...nodeResources(state(POLICIES), 'n2').values()];
  const tampered = rs.map((r) => {
    if (r.type === 'service' && r.name === 'shop/db') return { ...r, body: { ...(r.body as object), vip: '300.0.0.1' } };
    if (r.type === 'workload' && r.name === 'shop/web-2') return { ...r, body: { ...(r.body as object), enrolled: false } }; // version no longer matches
    if (r.type === 'service' && r.name === 'shop/web') return { ...r, name: 'shop/other' };
    return r;
  });
  const d = decodeNodeResources([...tampered, { type: 'bogus' as never, name: 'x', version: '0', body: {} }]);
  assert.deepEqual(d.problems.map((p) => p.key).sort(), ['bogus/x', 'service/shop/db', 'service/shop/other', 'workload/shop/web-2']);
  assert.deepEqual(d.content.services.map((s) => s.key), []);
  assert.equal(d.content.workloads.length, rs.filter((r) => r.type === 'workload').length - 1);
  assert.match(d.problems.find((p) => p.key === 'service/shop/db')?.message ?? '', /body\.vip must be an IPv4 address/);
});

test('parsed() fixture sanity: the policies parse', () => {
  assert.equal(parsed(POLICIES).policies.length, 3);
});
