import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_DOCS, node, NODE_DOCS, pod, state, yamlOf } from './fixture.ts';
import { buildMeshState } from '../../../src/model/state.ts';
import { parseManifests } from '../../../src/model/manifests.ts';

test('workloads carry enrollment from the namespace or the pod label, and their SPIFFE identity', () => {
  const s = state();
  const enrolled = Object.fromEntries(s.workloads.map((w) => [w.key, w.enrolled]));
  assert.deepEqual(enrolled, {
    'legacy/new-1': true, // pod label in a namespace outside the mesh
    'legacy/old-1': false,
    'shop/batch': false, // pod opts out of an enrolled namespace
    'shop/db-1': true,
    'shop/pending': true,
    'shop/web-1': true,
    'shop/web-2': true,
  });
  assert.equal(s.workload('shop/web-1')?.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  assert.equal(s.workload('legacy/old-1')?.serviceAccount, 'default');
  assert.equal(state([], 'example.org').workload('shop/db-1')?.identity, 'spiffe://example.org/ns/shop/sa/db');
});

test('lookups by IP, VIP and node', () => {
  const s = state();
  assert.equal(s.workloadByIp('198.18.2.11')?.key, 'shop/db-1');
  assert.equal(s.workloadByIp('198.18.7.7'), undefined);
  const atVip = s.serviceByVip('198.19.0.10', 81);
  assert.equal(atVip?.service.key, 'shop/web');
  assert.equal(atVip?.port.targetPort, 9090);
  assert.equal(s.serviceByVip('198.19.0.10', 82), undefined, 'a port the service does not expose');
  assert.deepEqual(s.workloadsOnNode('n1').map((w) => w.key), ['legacy/old-1', 'shop/batch', 'shop/web-1']);
  assert.deepEqual(s.workloadsOnNode('nowhere'), []);
  assert.deepEqual(s.nodes(), ['n1', 'n2', 'n3']);
});

test('endpoints come from the selector when a service has no EndpointSlice', () => {
  const s = state();
  assert.equal(s.service('shop/web')?.endpointSource, 'selector');
  assert.deepEqual(s.endpoints('shop/web', 80), [
    { ip: '198.18.1.10', port: 8080, node: 'n1', workload: 'shop/web-1', weight: 1 },
    { ip: '198.18.2.10', port: 8080, node: 'n2', workload: 'shop/web-2', weight: 1 },
  ]);
  assert.deepEqual(s.endpoints('shop/web', 81).map((e) => e.port), [9090, 9090]);
  assert.deepEqual(s.endpoints('shop/web', 8080), [], 'target ports are not service ports');
  assert.deepEqual(s.endpoints('shop/nope', 80), []);
});

test('endpoints come from EndpointSlices when the service has one: ready only, slice port, node from the slice', () => {
  const s = state();
  assert.equal(s.service('shop/db')?.endpointSource, 'EndpointSlice');
  assert.deepEqual(s.endpoints('shop/db', 5432), [
    { ip: '198.18.2.11', port: 15432, node: 'n2', workload: 'shop/db-1', weight: 1 },
    { ip: '198.18.8.8', port: 15432, node: 'n8', workload: undefined, weight: 1 },
  ]);
});

test('hasServiceAccountOnNode answers for enrolled workloads scheduled on that node only', () => {
  const s = state();
  assert.equal(s.hasServiceAccountOnNode('n1', 'shop', 'web'), true);
  assert.equal(s.hasServiceAccountOnNode('n2', 'shop', 'db'), true);
  assert.equal(s.hasServiceAccountOnNode('n1', 'shop', 'db'), false, 'db runs on n2');
  assert.equal(s.hasServiceAccountOnNode('n1', 'legacy', 'default'), false, 'old-1 is not enrolled');
  assert.equal(s.hasServiceAccountOnNode('n1', 'shop', 'batch'), false, 'batch opted out');
  assert.equal(s.hasServiceAccountOnNode('n3', 'legacy', 'fresh'), true);
});

test('finished and host-network pods are not workloads, so a reused IP resolves to the live pod', () => {
  const s = state([
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'done', namespace: 'shop' }, spec: { nodeName: 'n1', containers: [{ name: 'a' }] }, status: { podIP: '198.18.1.10', phase: 'Succeeded' } },
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'agent', namespace: 'weft-system' }, spec: { nodeName: 'n1', hostNetwork: true, containers: [{ name: 'a' }] }, status: { podIP: '198.18.0.1' } },
  ]);
  assert.equal(s.workloadByIp('198.18.1.10')?.key, 'shop/web-1');
  assert.equal(s.workload('shop/done'), undefined);
  assert.equal(s.workloadByIp('198.18.0.1'), undefined);
});

test('the state is frozen', () => {
  const s = state();
  assert.ok(Object.isFrozen(s));
  assert.ok(Object.isFrozen(s.workloads[0]));
  assert.throws(() => { (s.workloads as unknown as unknown[]).push(1); });
});

test('node addresses come from Node objects; nodes() lists nodes with workloads or a Node object', () => {
  const s = state([...NODE_DOCS, node('spare', [{ type: 'InternalIP', address: '198.18.0.20' }])]);
  assert.equal(s.nodeAddress('n2'), '198.18.0.12');
  assert.deepEqual(s.node('n3'), { name: 'n3', address: '198.18.0.13' });
  assert.equal(s.nodeAddress('spare'), '198.18.0.20');
  assert.equal(s.nodeAddress('n9'), undefined, 'an endpoint names n9, but no Node object does');
  assert.deepEqual(s.nodes(), ['n1', 'n2', 'n3', 'spare']);
  assert.deepEqual(s.workloadsOnNode('spare'), []);
  assert.equal(state().nodeAddress('n1'), undefined, 'no Node objects, no addresses');
});

test('two pods claiming one IP give the same endpoints whatever order the objects come in', () => {
  const twins = [
    pod('shop', 'zz-twin', { sa: 'web', node: 'n3', ip: '198.18.1.10', labels: { app: 'web' } }),
  ];
  const a = state(twins);
  const b = buildMeshState(parseManifests([{ path: 'r.yaml', text: yamlOf([...twins, ...[...BASE_DOCS].reverse()]) }]));
  assert.deepEqual(a.endpoints('shop/web', 80), b.endpoints('shop/web', 80));
  assert.equal(a.endpoints('shop/web', 80).find((e) => e.ip === '198.18.1.10')?.workload, 'shop/web-1', 'the first by namespace/name');
  assert.equal(b.workloadByIp('198.18.1.10')?.key, 'shop/web-1');
});

test('a named target port resolves per selected pod; a pod without it is no endpoint', () => {
  const named = (name: string, ip: string, ports: readonly object[]) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop', labels: { app: 'named' } },
    spec: { nodeName: 'n1', containers: [{ name: 'app', image: 'x', ports }] }, status: { podIP: ip },
  });
  const s = state([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'named', namespace: 'shop' }, spec: { clusterIP: '198.19.0.30', selector: { app: 'named' }, ports: [{ port: 80, targetPort: 'web' }, { port: 81, targetPort: 7000 }] } },
    named('a', '198.18.5.1', [{ name: 'web', containerPort: 8080 }]),
    named('b', '198.18.5.2', [{ name: 'web', containerPort: 8081 }]),
    named('c', '198.18.5.3', [{ containerPort: 8080 }]),
  ]);
  assert.deepEqual(s.endpoints('shop/named', 80).map((e) => `${e.workload} ${e.port}`), ['shop/a 8080', 'shop/b 8081']);
  assert.deepEqual(s.endpoints('shop/named', 81).map((e) => `${e.workload} ${e.port}`), ['shop/a 7000', 'shop/b 7000', 'shop/c 7000']);
});
