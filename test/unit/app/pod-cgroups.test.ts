import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownCgroupPath, PodCgroupLocator } from '../../../src/app/pod-cgroups.ts';
import { podCgroupRelative } from '../../../src/core/kubelet-cgroups.ts';

function tree(t: TestContext, dirs: readonly string[]): string {
  const root = mkdtempSync(join(tmpdir(), 'weft-cg-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const d of dirs) mkdirSync(join(root, d), { recursive: true });
  return root;
}

const A = '11111111-2222-3333-4444-555555555555';
const B = '66666666-7777-8888-9999-000000000000';

test('finds pods by UID under the systemd and the cgroupfs layout, any QoS class', (t) => {
  const systemd = tree(t, [podCgroupRelative('systemd', 'Burstable', A), podCgroupRelative('systemd', 'Guaranteed', B)]);
  const l1 = new PodCgroupLocator({ mount: systemd, ownCgroup: '/' });
  assert.equal(l1.locate({ namespace: 'shop', name: 'a', uid: A }), join(systemd, 'kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod11111111_2222_3333_4444_555555555555.slice'));
  assert.equal(l1.locate({ namespace: 'shop', name: 'b', uid: B }), join(systemd, 'kubepods.slice/kubepods-pod66666666_7777_8888_9999_000000000000.slice'));
  const cgroupfs = tree(t, [podCgroupRelative('cgroupfs', 'BestEffort', A)]);
  assert.equal(new PodCgroupLocator({ mount: cgroupfs, ownCgroup: '/' }).locate({ namespace: 'shop', name: 'a', uid: A }), join(cgroupfs, `kubepods/besteffort/pod${A}`));
});

test('a node nested in a shared hierarchy (the simulator) is found from the agent\'s own cgroup', (t) => {
  const mount = tree(t, [`weft-x/node-2/${podCgroupRelative('systemd', 'BestEffort', A)}`, `weft-x/node-1/${podCgroupRelative('systemd', 'BestEffort', B)}`]);
  const own = `/weft-x/node-2/${podCgroupRelative('systemd', 'Burstable', 'agent-uid')}/cri-containerd-1.scope`;
  const l = new PodCgroupLocator({ mount, ownCgroup: own });
  assert.deepEqual(l.roots, [join(mount, 'weft-x/node-2'), mount]);
  assert.match(l.locate({ namespace: 'shop', name: 'a', uid: A }), /weft-x\/node-2\/kubepods\.slice/);
  // A pod of another node is not this agent's to capture.
  assert.throws(() => l.locate({ namespace: 'shop', name: 'b', uid: B }), { code: 'WEFT_AGENT_NO_POD_CGROUP', message: /shop\/b: no cgroup for uid 66666666-.* under .*node-2\/kubepods\{\.slice,\}/ });
});

test('refusals say why; --pod-cgroup still overrides', (t) => {
  const mount = tree(t, ['custom/shop.a']);
  const l = new PodCgroupLocator({ mount, ownCgroup: '/' });
  assert.throws(() => l.locate({ namespace: 'shop', name: 'a', uid: undefined }), { code: 'WEFT_AGENT_NO_POD_CGROUP', message: /has no metadata\.uid/ });
  const o = new PodCgroupLocator({ mount, ownCgroup: '/', template: join(mount, 'custom/{namespace}.{name}') });
  assert.equal(o.locate({ namespace: 'shop', name: 'a', uid: undefined }), join(mount, 'custom/shop.a'));
  assert.throws(() => o.locate({ namespace: 'shop', name: 'z', uid: A }), { message: /no cgroup at .*custom\/shop\.z/ });
});

test('own cgroup path from /proc/self/cgroup (v2 line), "/" when none', () => {
  assert.equal(ownCgroupPath('12:cpu:/x\n0::/weft-a/node-1/agent\n'), '/weft-a/node-1/agent');
  assert.equal(ownCgroupPath('1:name=systemd:/\n'), '/');
});
