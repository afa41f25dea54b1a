import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planCluster } from '../../../src/sim/plan.ts';
import { defaultManifests } from '../../../src/sim/defaults.ts';
import { isWeftError } from '../../../src/core/errors.ts';
import { SimErrors } from '../../../src/sim/errors.ts';

const file = (text: string, path = 'user.yaml') => [{ path, text }];

test('the default 2x3 plan: addresses from 198.18.0.0/15, services spanning nodes', () => {
  const plan = planCluster({ name: 'demo', nodes: 2, podsPerNode: 3, manifests: defaultManifests(2, 3) });
  assert.deepEqual(plan.nodes.map((n) => [n.name, n.ip, n.bridgeIp, n.podCidr, n.netns]), [
    ['node-1', '198.18.0.11', '198.18.1.1', '198.18.1.0/24', 'weft-demo-n-node-1'],
    ['node-2', '198.18.0.12', '198.18.2.1', '198.18.2.0/24', 'weft-demo-n-node-2'],
  ]);
  assert.deepEqual(plan.pods.map((p) => `${p.node} ${p.name} ${p.ip}`), [
    'node-1 echo-1-0 198.18.1.10', 'node-1 hello-1-1 198.18.1.11', 'node-1 echo-1-2 198.18.1.12',
    'node-2 echo-2-0 198.18.2.10', 'node-2 hello-2-1 198.18.2.11', 'node-2 echo-2-2 198.18.2.12',
  ]);
  assert.ok(plan.pods.every((p) => p.enrolled && p.netns.startsWith('weft-demo-') && p.cgroup.startsWith('weft-demo/')));
  const echo = plan.services.find((s) => s.name === 'echo');
  assert.deepEqual(echo?.ports, [{ port: 80, targetPort: 8080 }]);
  const nodesOfEcho = new Set(plan.pods.filter((p) => p.labels.app === 'echo').map((p) => p.node));
  assert.equal(nodesOfEcho.size, 2, 'the echo service selects pods on several nodes');
});

test('user manifests: explicit node and IP, round-robin scheduling, enrollment by pod label', () => {
  const plan = planCluster({
    name: 'u', nodes: 2, podsPerNode: 0, manifests: file(`
apiVersion: v1
kind: Pod
metadata: { name: a, namespace: x, labels: { weft.dev/mesh: enabled } }
spec: { nodeName: node-2 }
status: { podIP: 198.18.2.50 }
---
apiVersion: v1
kind: Pod
metadata: { name: b, namespace: x }
---
apiVersion: v1
kind: Pod
metadata: { name: c, namespace: x }
`),
  });
  assert.deepEqual(plan.pods.map((p) => [p.name, p.node, p.ip, p.enrolled]), [
    ['b', 'node-1', '198.18.1.10', false],
    ['c', 'node-2', '198.18.2.10', false],
    ['a', 'node-2', '198.18.2.50', true],
  ]);
});

const refusals: [string, Parameters<typeof planCluster>[0], string, RegExp][] = [
  ['zero nodes', { name: 'a', nodes: 0, podsPerNode: 1, manifests: [] }, SimErrors.BAD_ARGUMENT, /--nodes must be a whole number from 1/],
  ['a bad name', { name: 'Bad_Name', nodes: 1, podsPerNode: 1, manifests: [] }, SimErrors.BAD_ARGUMENT, /not a valid cluster name/],
  ['a pod on an unknown node', { name: 'a', nodes: 1, podsPerNode: 0, manifests: file('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: node-7}\n') },
    SimErrors.BAD_MANIFEST, /user\.yaml: Pod\/default\/p: spec\.nodeName: "node-7" is not a node/],
  ['a pod IP outside its node', { name: 'a', nodes: 1, podsPerNode: 0, manifests: file('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: node-1}\nstatus: {podIP: 10.0.0.1}\n') },
    SimErrors.BAD_MANIFEST, /status\.podIP: 10\.0\.0\.1 is not a free pod address of node-1/],
  ['a VIP outside the service range', { name: 'a', nodes: 1, podsPerNode: 0, manifests: file('apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n') },
    SimErrors.BAD_MANIFEST, /Service\/default\/s: spec\.clusterIP: 10\.96\.0\.1 is outside/],
  ['a malformed port', { name: 'a', nodes: 1, podsPerNode: 0, manifests: file('apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 198.19.0.1, ports: [{port: http}]}\n', 'svc.yaml') },
    SimErrors.BAD_MANIFEST, /svc\.yaml: Service\/(default\/)?s: spec\.ports\[0\]\.port: must be a port number/],
  ['broken YAML', { name: 'a', nodes: 1, podsPerNode: 0, manifests: file('kind: Pod\nmetadata: [unclosed\n', 'broken.yaml') },
    SimErrors.BAD_MANIFEST, /broken\.yaml:3:1: document 1: invalid YAML: .* \[WEFT_MANIFEST_BAD_YAML\]$/],
  ['an unknown kind', { name: 'a', nodes: 1, podsPerNode: 0, manifests: file('apiVersion: v1\nkind: Deployment\nmetadata: {name: d}\n') },
    SimErrors.BAD_MANIFEST, /Deployment\/(default\/)?d: kind: unknown kind "Deployment"/],
  ['a full node', { name: 'a', nodes: 1, podsPerNode: 1, manifests: file('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: q}\n') },
    SimErrors.BAD_MANIFEST, /node-1 is full: it holds 1 pods \(--pods-per-node 1\)/],
];

for (const [what, req, code, message] of refusals) {
  test(`refuses ${what} with a message naming it`, () => {
    assert.throws(() => planCluster(req), (err: unknown) => isWeftError(err, code) && message.test(err.message));
  });
}

test('every problem of a manifest set is reported, not just the first', () => {
  const text = 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: node-9}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 1.2.3.4, ports: [{port: 80}]}\n';
  assert.throws(() => planCluster({ name: 'a', nodes: 1, podsPerNode: 0, manifests: file(text) }),
    (err: unknown) => isWeftError(err, SimErrors.BAD_MANIFEST) && /2 problem/.test(err.message) && /node-9/.test(err.message) && /1\.2\.3\.4/.test(err.message));
});

test('pods get UIDs and cgroups as the kubelet lays them out: QoS from resources, either driver', () => {
  const manifests = file(`
apiVersion: v1
kind: Pod
metadata: { name: g, namespace: shop }
spec: { nodeName: node-1, containers: [{ name: a, image: x, resources: { limits: { cpu: 500m, memory: 64Mi } } }] }
---
apiVersion: v1
kind: Pod
metadata: { name: b, namespace: shop, uid: 0a1b2c3d-0000-4000-8000-000000000001 }
spec: { nodeName: node-1, containers: [{ name: a, image: x, resources: { requests: { cpu: 100m } } }] }
---
apiVersion: v1
kind: Pod
metadata: { name: e, namespace: shop }
spec: { nodeName: node-1, containers: [{ name: a, image: x }] }
`);
  const systemd = planCluster({ name: 'q', nodes: 1, podsPerNode: 0, manifests, uidSeed: 'seed' });
  const byName = new Map(systemd.pods.map((p) => [p.name, p]));
  assert.deepEqual([...byName.values()].map((p) => `${p.name} ${p.qos}`).sort(), ['b Burstable', 'e BestEffort', 'g Guaranteed']);
  const b = byName.get('b') ?? assert.fail();
  assert.equal(b.uid, '0a1b2c3d-0000-4000-8000-000000000001', 'a UID the manifest gives is kept');
  assert.equal(b.cgroup, 'weft-q/node-1/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_0000_4000_8000_000000000001.slice');
  assert.match(b.containerCgroup, /^weft-q\/node-1\/kubepods\.slice\/.*\.slice\/cri-containerd-[0-9a-f]{64}\.scope$/);
  const g = byName.get('g') ?? assert.fail();
  assert.match(g.uid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(g.cgroup, `weft-q/node-1/kubepods.slice/kubepods-pod${g.uid.replaceAll('-', '_')}.slice`);
  assert.equal(planCluster({ name: 'q', nodes: 1, podsPerNode: 0, manifests, uidSeed: 'seed' }).pods.find((p) => p.name === 'g')?.uid, g.uid, 'the same seed, the same UIDs');
  assert.notEqual(planCluster({ name: 'q', nodes: 1, podsPerNode: 0, manifests }).pods.find((p) => p.name === 'g')?.uid, g.uid, 'a new cluster, new UIDs');

  const cgroupfs = planCluster({ name: 'q', nodes: 1, podsPerNode: 0, manifests, uidSeed: 'seed', cgroupDriver: 'cgroupfs' });
  const e = cgroupfs.pods.find((p) => p.name === 'e') ?? assert.fail();
  assert.equal(e.cgroup, `weft-q/node-1/kubepods/besteffort/pod${e.uid}`);
  assert.match(e.containerCgroup, new RegExp(`^weft-q/node-1/kubepods/besteffort/pod${e.uid}/[0-9a-f]{64}$`));
  assert.equal(cgroupfs.pods.find((p) => p.name === 'g')?.cgroup, `weft-q/node-1/kubepods/pod${g.uid}`);
});

test('a full node without --pods-per-node names the simulator\'s real limit, and a long problem list is capped', () => {
  const pods = Array.from({ length: 241 }, (_, i) => `apiVersion: v1\nkind: Pod\nmetadata: {name: p${i}}\nspec: {nodeName: node-1}\n`).join('---\n');
  assert.throws(() => planCluster({ name: 'a', nodes: 1, podsPerNode: 0, manifests: file(pods) }),
    (err: unknown) => isWeftError(err, SimErrors.BAD_MANIFEST) && /node-1 is full: it holds 240 pods \(the simulator's limit of 240 pods per node\)/.test(err.message));
  const bad = Array.from({ length: 45 }, (_, i) => `apiVersion: v1\nkind: Pod\nmetadata: {name: p${i}}\nspec: {nodeName: node-9}\n`).join('---\n');
  assert.throws(() => planCluster({ name: 'a', nodes: 1, podsPerNode: 0, manifests: file(bad) }), (err: unknown) => {
    if (!isWeftError(err, SimErrors.BAD_MANIFEST)) return false;
    const lines = err.message.split('\n');
    return /45 problem/.test(lines[0] ?? '') && lines.length === 22 && /\.\.\. and 25 more \(weft vet lists them all\)/.test(lines.at(-1) ?? '');
  });
});
