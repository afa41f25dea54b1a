import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planCluster } from '../../../src/sim/plan.ts';
import { defaultManifests } from '../../../src/sim/defaults.ts';
import { NODES_FILE, renderScheduled } from '../../../src/sim/render.ts';
import { splitManifests } from '../../../src/model/manifests.ts';
import { loadMesh } from '../../../src/model/load.ts';
import { nodeResources } from '../../../src/model/node-slice.ts';

test('the rendered default cluster loads without problems, with a Node per simulated node at its underlay address', () => {
  const plan = planCluster({ name: 'demo', nodes: 2, podsPerNode: 3, manifests: defaultManifests(2, 3) });
  const files = renderScheduled(plan, defaultManifests(2, 3));
  assert.deepEqual(files.map((f) => f.path), [NODES_FILE, '01-generated.yaml']);
  const split = splitManifests(files);
  assert.deepEqual(split.problems, []);
  const { state, problems } = loadMesh(split.objects);
  assert.deepEqual(problems, []);
  assert.equal(state.nodeAddress('node-1'), '198.18.0.11');
  assert.equal(state.nodeAddress('node-2'), '198.18.0.12');
  assert.deepEqual(state.nodes(), ['node-1', 'node-2']);
  assert.equal(state.workloadByIp('198.18.2.10')?.node, 'node-2', 'pods are rendered as scheduled');
  // What node-1's agent is pushed: node-2's address, for tunnels to the pods there.
  const pushed = nodeResources(state, 'node-1').get('node/node-2');
  assert.deepEqual(pushed?.body, { name: 'node-2', address: '198.18.0.12' });
});

test('a user\'s Node objects give way to the simulator\'s own', () => {
  const user = [{
    path: 'mine.yaml',
    text: 'apiVersion: v1\nkind: Node\nmetadata: { name: node-1 }\nstatus: { addresses: [{ type: InternalIP, address: 10.0.0.1 }] }\n'
      + '---\napiVersion: v1\nkind: Namespace\nmetadata: { name: apps }\n',
  }];
  const plan = planCluster({ name: 'u', nodes: 1, podsPerNode: 0, manifests: user });
  const { state, problems } = loadMesh(splitManifests(renderScheduled(plan, user)).objects);
  assert.deepEqual(problems, [], 'no duplicate Node');
  assert.equal(state.nodeAddress('node-1'), '198.18.0.11');
});
