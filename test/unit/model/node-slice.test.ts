import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, diffNodeResources, nodeResources, nodeSlice, resourceVersion, ResourceCache, type NodeResource } from '../../../src/model/node-slice.ts';
import { decodeNodeResources } from '../../../src/model/resource-codec.ts';
import { meshStateFromContent } from '../../../src/model/state.ts';
import { authorize, type AuthorizationRequest } from '../../../src/model/authorize.ts';
import { buildMeshState } from '../../../src/model/state.ts';
import { parseManifests } from '../../../src/model/manifests.ts';
import { decideRoute } from '../../../src/model/route-match.ts';
import { BASE_DOCS, node, NODE_DOCS, parsed, pod, policy, state, yamlOf } from './fixture.ts';

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
  assert.deepEqual([...a.keys()].filter((k) => !k.startsWith('workload/') && !k.startsWith('endpoint/')), [
    'mesh/config', 'service/shop/db', 'service/shop/web', 'authorization/shop/db-only-web', 'authorization/weft-system/global',
    'identity/shop/db', 'identity/shop/web',
  ]);
  // Each endpoint of each Service port is a resource of its own.
  assert.deepEqual([...a.keys()].filter((k) => k.startsWith('endpoint/')), [
    'endpoint/shop/db/5432/198.18.2.11', 'endpoint/shop/db/5432/198.18.8.8',
    'endpoint/shop/web/80/198.18.1.10', 'endpoint/shop/web/80/198.18.2.10', 'endpoint/shop/web/81/198.18.1.10', 'endpoint/shop/web/81/198.18.2.10',
  ]);
  assert.deepEqual(a.get('endpoint/shop/db/5432/198.18.2.11')?.body, { service: 'shop/db', port: 5432, ip: '198.18.2.11', targetPort: 15432, node: 'n2', workload: 'shop/db-1', weight: 1 });
  assert.equal((a.get('service/shop/db')?.body as { endpoints?: unknown }).endpoints, undefined, 'the Service resource carries no endpoints');
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
  // A new pod on n1 behind the web service adds its endpoint on each web port and one peer; nothing else.
  const after = nodeResources(state([...POLICIES, pod('shop', 'web-3', { sa: 'web', node: 'n1', ip: '198.18.1.11', labels: { app: 'web' } })]), 'n2');
  const d = diffNodeResources(before, after);
  assert.deepEqual(d.changed.map((r) => `${r.type}/${r.name}`), ['endpoint/shop/web/80/198.18.1.11', 'endpoint/shop/web/81/198.18.1.11', 'workload/shop/web-3']);
  assert.deepEqual(d.removed, []);
  const back = diffNodeResources(after, before);
  assert.deepEqual(back.changed, []);
  assert.deepEqual(back.removed, ['endpoint/shop/web/80/198.18.1.11', 'endpoint/shop/web/81/198.18.1.11', 'workload/shop/web-3']);
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

test('a meshed node gets the addresses of the nodes hosting its peers and the services\' endpoints', () => {
  const s = state([...POLICIES, ...NODE_DOCS, node('n8', [{ type: 'InternalIP', address: '198.18.0.18' }]), node('idle', [{ type: 'InternalIP', address: '198.18.0.30' }])]);
  // n2: peers on n1 and n3; endpoints on n1, n2 (itself) and n8 (a slice endpoint without a pod); n9's endpoint is not ready.
  assert.deepEqual(nodeSlice(s, 'n2').nodes, [
    { name: 'n1', address: '198.18.0.11' }, { name: 'n2', address: '198.18.0.12' },
    { name: 'n3', address: '198.18.0.13' }, { name: 'n8', address: '198.18.0.18' },
  ]);
  // n3 hosts no endpoint, so it does not get its own address.
  assert.deepEqual(nodeSlice(s, 'n3').nodes.map((n) => n.name), ['n1', 'n2', 'n8']);
  assert.deepEqual(nodeSlice(state([...NODE_DOCS]), 'n2').nodes.map((n) => n.name), ['n1', 'n2', 'n3'], 'n8 has no Node object: left out');
  const lone = buildMeshState(parseManifests([{ path: 'x', text: yamlOf([...BASE_DOCS, ...NODE_DOCS, pod('legacy', 'lone', { node: 'n7', ip: '198.18.7.1' })]) }]));
  assert.deepEqual(nodeSlice(lone, 'n7').nodes, [], 'a node without enrolled workloads calls no one');
});

test('node resources: node/<name> with {name, address}, content-versioned, decoded on the agent', () => {
  const s = state([...POLICIES, ...NODE_DOCS]);
  const rs = nodeResources(s, 'n3');
  assert.deepEqual([...rs.keys()].filter((k) => k.startsWith('node/')), ['node/n1', 'node/n2']);
  const r = rs.get('node/n1') ?? assert.fail();
  assert.deepEqual([r.type, r.name, r.body], ['node', 'n1', { name: 'n1', address: '198.18.0.11' }]);
  assert.equal(r.version, resourceVersion({ address: '198.18.0.11', name: 'n1' }));
  const cache = new ResourceCache();
  nodeResources(s, 'n1', cache);
  assert.deepEqual([...nodeResources(s, 'n3', cache).keys()], [...rs.keys()], 'a shared cache gives the same node resources');
  assert.equal(nodeResources(s, 'n3', cache).get('node/n1'), nodeResources(s, 'n2', cache).get('node/n1'), 'one resource object for every node');
  const wire = JSON.parse(JSON.stringify([...rs.values()])) as NodeResource[];
  const decoded = decodeNodeResources(wire);
  assert.deepEqual(decoded.problems, []);
  assert.deepEqual(decoded.content.nodes, [{ name: 'n1', address: '198.18.0.11' }, { name: 'n2', address: '198.18.0.12' }]);
  const agent = meshStateFromContent(decoded.content);
  assert.equal(agent.nodeAddress('n2'), '198.18.0.12');
  assert.equal(agent.nodeAddress(agent.workload('shop/web-2')?.node ?? ''), '198.18.0.12', 'a remote workload\'s node resolves to its agent');
  assert.equal(agent.nodeAddress('n3'), undefined);
});

test('a node that moves changes only its own node resource', () => {
  const moved = NODE_DOCS.map((d, i) => (i === 0 ? node('n1', [{ type: 'InternalIP', address: '198.18.0.21' }]) : d));
  const d = diffNodeResources(nodeResources(state([...POLICIES, ...NODE_DOCS]), 'n2'), nodeResources(state([...POLICIES, ...moved]), 'n2'));
  assert.deepEqual(d.changed.map((r) => [`${r.type}/${r.name}`, (r.body as { address: string }).address]), [['node/n1', '198.18.0.21']]);
  assert.deepEqual(d.removed, []);
  const gone = diffNodeResources(nodeResources(state([...POLICIES, ...NODE_DOCS]), 'n2'), nodeResources(state([...POLICIES, ...NODE_DOCS.slice(1)]), 'n2'));
  assert.deepEqual(gone, { changed: [], removed: ['node/n1'] });
});

test('a node resource with a bad address is rejected alone, with a clear message', () => {
  const rs = [...nodeResources(state([...POLICIES, ...NODE_DOCS]), 'n2').values()];
  const withBody = (r: NodeResource, body: object): NodeResource => ({ ...r, body, version: resourceVersion(body) });
  const tampered = rs.map((r) => {
    if (r.type === 'node' && r.name === 'n1') return withBody(r, { name: 'n1', address: '224.0.0.1' });
    if (r.type === 'node' && r.name === 'n3') return withBody(r, { name: 'n3', address: 'n3.example' });
    return r;
  });
  const d = decodeNodeResources([...tampered, withBody({ type: 'node', name: 'n4', version: '', body: {} }, { name: 'other', address: '198.18.0.14' })]);
  assert.deepEqual(d.problems, [
    { key: 'node/n1', message: 'body.address "224.0.0.1" cannot be a node address: it is a multicast address' },
    { key: 'node/n3', message: 'body.address must be an IPv4 address, got "n3.example"' },
    { key: 'node/n4', message: 'body names "other", not "n4"' },
  ]);
  assert.deepEqual(d.content.nodes.map((n) => n.name), ['n2'], 'the good node still applies');
  assert.equal(d.content.services.length, 2, 'other resources still apply');
});

test('service ports reach the agent with their names and appProtocol', () => {
  const extra = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'api', namespace: 'shop' }, spec: { clusterIP: '198.19.0.12', selector: { app: 'web' }, ports: [{ name: 'grpc-api', port: 90, targetPort: 9000, appProtocol: 'grpc' }] } };
  const wire = JSON.parse(JSON.stringify([...nodeResources(state([extra]), 'n2').values()])) as NodeResource[];
  const decoded = decodeNodeResources(wire);
  assert.deepEqual(decoded.problems, []);
  const agent = meshStateFromContent(decoded.content);
  assert.deepEqual(agent.serviceByVip('198.19.0.12', 90)?.port, { name: 'grpc-api', port: 90, targetPort: 9000, protocol: 'TCP', appProtocol: 'grpc' });
  assert.deepEqual(agent.serviceByVip('198.19.0.10', 80)?.port, { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' });
});

test('a pod\'s metadata.uid reaches its agent, which finds the pod\'s cgroup by it', () => {
  const uid = '0c1e5bd8-7c60-4a51-9a2c-0d1f1e2b3c4d';
  const withUid = { ...pod('shop', 'web-9', { node: 'n2', ip: '198.18.2.99', labels: { app: 'web' } }) } as { metadata: Record<string, unknown> };
  withUid.metadata = { ...withUid.metadata, uid };
  const wire = JSON.parse(JSON.stringify([...nodeResources(state([withUid]), 'n2').values()])) as NodeResource[];
  const decoded = decodeNodeResources(wire);
  assert.deepEqual(decoded.problems, []);
  assert.equal(decoded.content.workloads.find((w) => w.key === 'shop/web-9')?.uid, uid);
  assert.equal(decoded.content.workloads.find((w) => w.key === 'shop/web-2')?.uid, undefined, 'a pod without one has none');
  const bad = { ...withUid, metadata: { ...withUid.metadata, name: 'web-8', uid: '../../etc' } };
  const r = parseManifests([{ path: 'x', text: yamlOf([...BASE_DOCS, bad]) }]);
  assert.deepEqual(r.problems.map((p) => `${p.object} ${p.field}`), ['Pod/shop/web-8 metadata.uid']);
});

const withVersion = (r: NodeResource, body: object): NodeResource => ({ ...r, body, version: resourceVersion(body) });

test('routes go to the nodes whose callers they affect: producer routes to every meshed node, consumer routes where their namespace has enrolled workloads', () => {
  const rt = (ns: string, name: string, parentName: string, extra: object = {}) => ({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: ns },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: parentName, namespace: 'shop', ...extra }], rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/v[0-9]+/.*' } }], backendRefs: [{ name: 'web', namespace: 'shop', port: 80 }] }] },
  });
  const s = state([rt('shop', 'producer', 'web'), rt('legacy', 'consumer', 'web'), rt('shop', 'orphan', 'no-such-service')]);
  const names = (n: string) => nodeSlice(s, n).routes.map((r) => `${r.namespace}/${r.name}`);
  assert.deepEqual(names('n1'), ['shop/producer'], 'legacy/old-1 on n1 is not enrolled');
  assert.deepEqual(names('n2'), ['shop/producer']);
  assert.deepEqual(names('n3'), ['legacy/consumer', 'shop/producer']);
  const lone = buildMeshState(parseManifests([{ path: 'x', text: yamlOf([...BASE_DOCS, pod('legacy', 'lone', { node: 'n7', ip: '198.18.7.1' }), rt('shop', 'producer', 'web')]) }]));
  assert.deepEqual(nodeSlice(lone, 'n7').routes, [], 'a node with nothing enrolled gets no routes');

  const wire = JSON.parse(JSON.stringify([...nodeResources(s, 'n3').values()])) as NodeResource[];
  assert.ok(wire.some((r) => r.type === 'route' && r.name === 'HTTPRoute/legacy/consumer'));
  const decoded = decodeNodeResources(wire);
  assert.deepEqual(decoded.problems, []);
  const agent = meshStateFromContent(decoded.content);
  const web = agent.service('shop/web') ?? assert.fail();
  const req = { method: 'GET', path: '/v2/x', headers: {}, authority: 'web', grpc: false, sourceNamespace: 'legacy' };
  assert.deepEqual(decideRoute(agent.routeTable(web, 80), req, () => 0.5), decideRoute(s.routeTable(s.service('shop/web') ?? assert.fail(), 80), req, () => 0.5));
  assert.equal(decideRoute(agent.routeTable(web, 80), req, () => 0.5).route?.name, 'consumer');

  const tampered = wire.map((r) => (r.type === 'route' && r.name === 'HTTPRoute/shop/producer' ? withVersion(r, {
    ...(r.body as object), rules: [{ name: undefined, matches: [{ path: { type: 'RegularExpression', value: '(' }, headers: [], queryParams: [] }], filters: [], backendRefs: [], timeouts: {} }],
  }) : r));
  const bad = decodeNodeResources(tampered);
  assert.deepEqual(bad.problems.map((p) => p.key), ['route/HTTPRoute/shop/producer']);
  assert.match(bad.problems[0]?.message ?? '', /RE2/);
  assert.deepEqual(bad.content.routes?.map((r) => r.name), ['consumer'], 'the bad route alone is rejected');
});

test('a Service with a named target port and pods with named ports reach the agent intact', () => {
  const named = (name: string, nodeName: string, ip: string) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', labels: { app: 'named' } },
    spec: { nodeName, serviceAccountName: 'web', containers: [{ name: 'app', image: 'x', ports: [{ name: 'web', containerPort: 8443 }] }] }, status: { podIP: ip },
  });
  const full = state([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'named', namespace: 'shop' }, spec: { clusterIP: '198.19.0.30', selector: { app: 'named' }, ports: [{ port: 80, targetPort: 'web' }] } },
    named('named-1', 'n1', '198.18.5.1'), named('named-2', 'n2', '198.18.5.2'),
  ]);
  const wire = JSON.parse(JSON.stringify([...nodeResources(full, 'n2').values()])) as NodeResource[];
  const decoded = decodeNodeResources(wire);
  assert.deepEqual(decoded.problems, []);
  const agent = meshStateFromContent(decoded.content);
  assert.equal(agent.serviceByVip('198.19.0.30', 80)?.port.targetPort, 'web');
  assert.deepEqual(agent.endpoints('shop/named', 80).map((e) => `${e.ip}:${e.port}`), ['198.18.5.1:8443', '198.18.5.2:8443']);
  assert.deepEqual(agent.workload('shop/named-2')?.ports, { web: 8443 });
});

test('the agent puts endpoints back into their Services as the model resolved them; a Service that carries its own is taken as it is', () => {
  const s = state(POLICIES);
  const wire = JSON.parse(JSON.stringify([...nodeResources(s, 'n2').values()])) as NodeResource[];
  const decoded = decodeNodeResources(wire);
  assert.deepEqual(decoded.problems, []);
  assert.deepEqual(JSON.parse(JSON.stringify(decoded.content.services)), JSON.parse(JSON.stringify(s.services)), 'endpoints per port, by address, as resolved');
  // Without its endpoint resources a Service has none; an old-style Service body keeps its own.
  const noEndpoints = decodeNodeResources(wire.filter((r) => r.type !== 'endpoint'));
  assert.deepEqual(noEndpoints.content.services.find((x) => x.key === 'shop/web')?.endpoints.map((pe) => pe.endpoints.length), [0, 0]);
  const old = { type: 'service' as const, name: 'shop/web', body: s.service('shop/web'), version: resourceVersion(s.service('shop/web')) };
  const legacy = decodeNodeResources([JSON.parse(JSON.stringify(old)) as NodeResource]);
  assert.deepEqual(legacy.problems, []);
  assert.deepEqual(legacy.content.services[0]?.endpoints.map((pe) => pe.endpoints.length), [2, 2]);
});
