import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatProblem, parseManifests, parseObjects, splitManifests } from '../../../src/model/manifests.ts';
import { BASE_DOCS, node, pod, policy, yamlOf } from './fixture.ts';

const file = (docs: readonly object[], path = 'm.yaml') => ({ path, text: yamlOf(docs) });
// The Kubernetes schema check is on for the control plane and vet; parseManifests leaves it off by default.
const parse = (files: Parameters<typeof parseManifests>[0], other: ReadonlySet<string> = new Set()) => parseManifests(files, other, { kubernetesSchema: true });

test('parses every kind the model knows', () => {
  const r = parse([file(BASE_DOCS), file([policy('shop', 'p', { action: 'DENY' })], 'p.yaml')]);
  assert.deepEqual(r.problems, []);
  assert.equal(r.namespaces.length, 3);
  assert.equal(r.pods.length, 7);
  assert.equal(r.services.length, 2);
  assert.equal(r.serviceAccounts.length, 2);
  assert.equal(r.endpointSlices.length, 1);
  assert.deepEqual(r.endpointSlices[0]?.endpoints[0], { addresses: ['198.18.2.11'], ready: true, nodeName: 'n2', podName: 'db-1' });
  assert.deepEqual(r.policies, [{ name: 'p', namespace: 'shop', selector: {}, action: 'DENY', rules: [], dryRun: false }]);
  assert.equal(r.origins.get('AuthorizationPolicy/shop/p')?.file, 'p.yaml');
  assert.equal(r.origins.get('Namespace//shop')?.file, 'm.yaml');
});

test('knownOtherKinds are passed through even when the model knows them (the simulator relies on it)', () => {
  const r = parse([file(BASE_DOCS)], new Set(['ServiceAccount', 'EndpointSlice']));
  assert.equal(r.serviceAccounts.length, 0);
  assert.deepEqual(r.others.map((o) => o.kind).sort(), ['EndpointSlice', 'ServiceAccount', 'ServiceAccount']);
  assert.deepEqual(r.problems, []);
});

interface ProblemCase {
  readonly name: string;
  readonly doc: object;
  readonly object: string;
  readonly field: string | undefined;
  readonly message: RegExp;
}

const PROBLEMS: readonly ProblemCase[] = [
  { name: 'unknown kind', doc: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }, object: 'ConfigMap/c', field: 'kind', message: /unknown kind "ConfigMap"/ },
  { name: 'wrong apiVersion', doc: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'a', namespace: 'x' } }, object: 'AuthorizationPolicy/x/a', field: 'apiVersion', message: /weft\.dev\/v1alpha1/ },
  { name: 'Kubernetes schema: container without name', doc: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ image: 'x' }] } }, object: 'Pod/p', field: 'spec.containers[0].name', message: /required \(Kubernetes schema\)/ },
  { name: 'Kubernetes schema: wrong type', doc: { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { clusterIP: '198.19.0.1', ports: [{ port: 'eighty' }] } }, object: 'Service/s', field: 'spec.ports[0].port', message: /must be a port number/ },
  { name: 'VIP not an address', doc: { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { clusterIP: '198.19.0', ports: [{ port: 80 }] } }, object: 'Service/s', field: 'spec.clusterIP', message: /IPv4/ },
  { name: 'VIP loopback', doc: { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { clusterIP: '127.0.0.5', ports: [{ port: 80 }] } }, object: 'Service/s', field: 'spec.clusterIP', message: /loopback/ },
  { name: 'headless service', doc: { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { clusterIP: 'None', ports: [{ port: 80 }] } }, object: 'Service/s', field: 'spec.clusterIP', message: /headless/ },
  { name: 'slice without service label', doc: { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'e', namespace: 'x' }, addressType: 'IPv4', endpoints: [] }, object: 'EndpointSlice/x/e', field: 'metadata.labels.kubernetes.io/service-name', message: /required/ },
  { name: 'slice bad address', doc: { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'e', namespace: 'x', labels: { 'kubernetes.io/service-name': 's' } }, addressType: 'IPv4', endpoints: [{ addresses: ['1.2.3'] }] }, object: 'EndpointSlice/x/e', field: 'endpoints[0].addresses[0]', message: /IPv4/ },
  { name: 'pod bad IP', doc: pod('x', 'p', { ip: '300.1.1.1' }), object: 'Pod/x/p', field: 'status.podIP', message: /IPv4/ },
  { name: 'service account bad name', doc: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'Bad_Name', namespace: 'x' } }, object: 'ServiceAccount/x/Bad_Name', field: 'metadata.name', message: /DNS name/ },
];

for (const c of PROBLEMS) {
  test(`problem: ${c.name}`, () => {
    const r = parse([file([c.doc], 'bad.yaml')]);
    assert.ok(r.problems.length >= 1, 'expected a problem');
    const p = r.problems[0];
    assert.equal(p?.file, 'bad.yaml');
    assert.equal(p.object, c.object);
    assert.equal(p.field, c.field);
    assert.match(p.message, c.message);
    assert.equal(r.pods.length + r.services.length + r.endpointSlices.length + r.serviceAccounts.length + r.policies.length, 0, 'the bad object is rejected');
  });
}

test('one bad object rejects only itself', () => {
  const r = parse([file([pod('x', 'good', {}), pod('x', 'bad', { ip: 'nope' }), pod('x', 'also-good', {})])]);
  assert.deepEqual(r.pods.map((p) => p.name), ['good', 'also-good']);
  assert.equal(r.problems.length, 1);
  assert.equal(formatProblem(r.problems[0] ?? assert.fail()), 'm.yaml: Pod/x/bad: status.podIP: must be an IPv4 or IPv6 address, got "nope"');
});

test('YAML errors name the document; duplicates name the first file', () => {
  const r = parse([
    { path: 'a.yaml', text: `${yamlOf([pod('x', 'p', {})])}\n---\nkind: [unclosed\n` },
    file([pod('x', 'p', {})], 'b.yaml'),
  ]);
  assert.deepEqual(r.problems.map((p) => [p.file, p.object, p.field]), [['a.yaml', 'document 2', undefined], ['b.yaml', 'Pod/x/p', 'metadata.name']]);
  assert.match(r.problems[1]?.message ?? '', /first defined in a\.yaml/);
});

test('given the previous objects, an object that turned invalid keeps its last good version', () => {
  const first = parse([file([pod('x', 'p', { ip: '198.18.0.1' }), policy('x', 'deny', { action: 'DENY', rules: [{}] })])]);
  const next = splitManifests([file([pod('x', 'p', { ip: 'oops' }), policy('x', 'deny', { action: 'DENI' })])]);
  const r = parseObjects(next.objects, { previous: first });
  assert.equal(r.pods[0]?.ip, '198.18.0.1');
  assert.equal(r.policies[0]?.action, 'DENY');
  assert.equal(r.problems.length, 2);
  assert.ok(r.problems.every((p) => p.message.endsWith('(keeping the previous version of this object)')));
  const without = parseObjects(next.objects);
  assert.equal(without.pods.length + without.policies.length, 0);
});

test('a valid version of an object beats an invalid one before it; the previous version is kept only when none is valid', () => {
  const first = parse([file([pod('x', 'p', { ip: '198.18.0.1' })])]);
  const bad = pod('x', 'p', { ip: 'oops' });
  const next = splitManifests([file([bad], 'a.yaml'), file([pod('x', 'p', { ip: '198.18.0.2' })], 'b.yaml')]);
  const r = parseObjects(next.objects, { previous: first });
  assert.deepEqual(r.pods.map((p) => p.ip), ['198.18.0.2'], 'the valid one in b.yaml, not the kept version');
  assert.deepEqual(r.problems.map((p) => [p.file, p.field]), [['a.yaml', 'status.podIP']]);
  assert.doesNotMatch(r.problems[0]?.message ?? '', /keeping/);
  const none = parseObjects(splitManifests([file([bad], 'a.yaml'), file([bad], 'b.yaml')]).objects, { previous: first });
  assert.deepEqual(none.pods.map((p) => p.ip), ['198.18.0.1'], 'none valid: the previous version stays');
  assert.deepEqual(none.problems.map((p) => [p.file, /keeping/.test(p.message)]), [['a.yaml', true], ['b.yaml', false]]);
});

test('parseManifests leaves the Kubernetes schema check off unless asked (simulator manifests have no containers)', () => {
  const doc = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { nodeName: 'n1', containers: [{ image: 'x' }] } };
  assert.equal(parse([file([doc])]).pods.length, 0);
  assert.equal(parseManifests([file([doc])]).pods.length, 1);
  assert.equal(parseObjects(splitManifests([file([doc])]).objects).pods.length, 0, 'parseObjects checks the schema by default');
});

test('Node: the address is the IPv4 InternalIP, else the first IPv4 ExternalIP; IPv6 entries are skipped', () => {
  const r = parse([file([
    node('a', [{ type: 'Hostname', address: 'a' }, { type: 'ExternalIP', address: '203.0.113.5' }, { type: 'InternalIP', address: 'fd00::5' }, { type: 'InternalIP', address: '198.18.0.11' }]),
    node('b', [{ type: 'InternalIP', address: 'fd00::6' }, { type: 'ExternalIP', address: 'fd00::7' }, { type: 'ExternalIP', address: '203.0.113.6' }, { type: 'ExternalIP', address: '203.0.113.7' }]),
  ], 'nodes.yaml')]);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.nodes, [
    { name: 'a', labels: { 'kubernetes.io/hostname': 'a' }, address: '198.18.0.11' },
    { name: 'b', labels: { 'kubernetes.io/hostname': 'b' }, address: '203.0.113.6' },
  ]);
  assert.equal(r.origins.get('Node//b')?.file, 'nodes.yaml');
});

const NODE_PROBLEMS: readonly ProblemCase[] = [
  { name: 'no addresses at all', doc: { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n' } }, object: 'Node/n', field: 'status.addresses', message: /no usable IPv4 InternalIP or ExternalIP \(got: none\)/ },
  { name: 'only IPv6 and a hostname', doc: node('n', [{ type: 'InternalIP', address: 'fd00::1' }, { type: 'Hostname', address: 'n' }]), object: 'Node/n', field: 'status.addresses', message: /got: InternalIP fd00::1, Hostname n/ },
  { name: 'an unusable InternalIP', doc: node('n', [{ type: 'InternalIP', address: '0.0.0.0' }]), object: 'Node/n', field: 'status.addresses', message: /no usable/ },
  { name: 'an address entry without a type (Kubernetes schema)', doc: node('n', [{ address: '198.18.0.11' } as never]), object: 'Node/n', field: 'status.addresses[0].type', message: /must be a string|required/ },
  { name: 'a bad name', doc: { apiVersion: 'v1', kind: 'Node', metadata: { name: 'Bad_Name' }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.11' }] } }, object: 'Node/Bad_Name', field: 'metadata.name', message: /DNS name/ },
  { name: 'Node with the wrong apiVersion', doc: { apiVersion: 'apps/v1', kind: 'Node', metadata: { name: 'n' } }, object: 'Node/n', field: 'apiVersion', message: /must be "v1" for Node/ },
];

for (const c of NODE_PROBLEMS) {
  test(`problem: Node ${c.name}`, () => {
    const r = parse([file([c.doc, node('fine', [{ type: 'InternalIP', address: '198.18.0.12' }])], 'bad.yaml')]);
    const p = r.problems[0] ?? assert.fail('expected a problem');
    assert.deepEqual([p.file, p.object, p.field], ['bad.yaml', c.object, c.field]);
    assert.match(p.message, c.message);
    assert.deepEqual(r.nodes.map((n) => n.name), ['fine'], 'the bad Node is rejected alone');
  });
}

test('a Node that lost its address keeps its last good version, given the previous objects', () => {
  const first = parse([file([node('n1', [{ type: 'InternalIP', address: '198.18.0.11' }])])]);
  const next = splitManifests([file([node('n1', [])])]);
  const r = parseObjects(next.objects, { previous: first });
  assert.deepEqual(r.nodes.map((n) => n.address), ['198.18.0.11']);
  assert.match(r.problems[0]?.message ?? '', /keeping the previous version/);
});

test('Service ports keep appProtocol (the protocol hint) and their names', () => {
  const svc = (ports: object[]) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'x' }, spec: { clusterIP: '198.19.0.9', ports } });
  const r = parse([file([svc([{ name: 'http-web', port: 80 }, { name: 'api', port: 81, appProtocol: 'kubernetes.io/h2c' }, { port: 82, appProtocol: 'grpc' }])])]);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.services[0]?.ports, [
    { name: 'http-web', port: 80, targetPort: 80, protocol: 'TCP' },
    { name: 'api', port: 81, targetPort: 81, protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' },
    { name: undefined, port: 82, targetPort: 82, protocol: 'TCP', appProtocol: 'grpc' },
  ]);
  const bad = parse([file([svc([{ port: 80, appProtocol: 'not a name' }])])]);
  assert.equal(bad.services.length, 0);
  assert.equal(bad.problems[0]?.field, 'spec.ports[0].appProtocol');
  assert.match(bad.problems[0]?.message ?? '', /protocol name/);
});

test('a named targetPort is kept as a name; container port names are checked', () => {
  const svc = (targetPort: unknown) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'x' }, spec: { clusterIP: '198.19.0.9', ports: [{ port: 80, targetPort }] } });
  const withPorts = (name: string, ports: object[]): object => {
    const p = pod('x', name, {}) as { spec: { containers: object[] } };
    return { ...p, spec: { ...p.spec, containers: [{ name: 'app', image: 'x', ports }] } };
  };
  const r = parse([file([svc('web'), withPorts('p', [{ name: 'web', containerPort: 8080 }, { containerPort: 9090 }])])]);
  assert.deepEqual(r.problems, []);
  assert.equal(r.services[0]?.ports[0]?.targetPort, 'web');
  assert.deepEqual([r.pods[0]?.containerPorts, r.pods[0]?.namedPorts], [[8080, 9090], { web: 8080 }]);
  const cases: [object, string, RegExp][] = [
    [svc('Web_Port'), 'spec.ports[0].targetPort', /port number 1-65535 or a container port name/],
    [svc('1234'), 'spec.ports[0].targetPort', /container port name/],
    [svc(0), 'spec.ports[0].targetPort', /port number 1-65535/],
    [withPorts('q', [{ name: 'a-very-long-port-name', containerPort: 1 }]), 'spec.containers[0].ports[0].name', /port name/],
    [withPorts('q', [{ name: 'web', containerPort: 1 }, { name: 'web', containerPort: 2 }]), 'spec.containers[0].ports[1].name', /duplicates port name "web" \(already port 1\)/],
  ];
  for (const [doc, field, message] of cases) {
    const bad = parse([file([doc])]);
    assert.equal(bad.problems.length, 1, JSON.stringify(bad.problems));
    assert.equal(bad.problems[0]?.field, field);
    assert.match(bad.problems[0]?.message ?? '', message);
  }
});

test('pod addresses: the IPv4 one from podIP or podIPs; IPv6 ones are kept apart, so capture can refuse the pod', () => {
  const withStatus = (name: string, status: object): object => ({ ...(pod('x', name, {}) as Record<string, unknown>), status });
  const r = parse([file([
    withStatus('v4', { podIP: '198.18.1.10', podIPs: [{ ip: '198.18.1.10' }] }),
    withStatus('dual', { podIP: '198.18.1.11', podIPs: [{ ip: '198.18.1.11' }, { ip: 'fd00::11' }] }),
    withStatus('v6-first', { podIP: 'fd00::12', podIPs: [{ ip: 'fd00::12' }, { ip: '198.18.1.12' }] }),
    withStatus('v6-only', { podIP: 'fd00::13', podIPs: [{ ip: 'fd00::13' }] }),
    withStatus('bad', { podIP: '198.18.1.14', podIPs: [{ ip: 'not-an-ip' }] }),
  ])]);
  assert.deepEqual(r.pods.map((p) => [p.name, p.ip, p.ipv6]), [
    ['v4', '198.18.1.10', undefined],
    ['dual', '198.18.1.11', ['fd00::11']],
    ['v6-first', '198.18.1.12', ['fd00::12']],
    ['v6-only', undefined, ['fd00::13']],
  ]);
  assert.deepEqual(r.problems.map((p) => [p.object, p.field]), [['Pod/x/bad', 'status.podIPs[0].ip']]);
  assert.match(r.problems[0]?.message ?? '', /must be an IPv4 or IPv6 address, got "not-an-ip"/);
});
