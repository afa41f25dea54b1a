// Finding a pod's network namespace for eBPF inbound capture: the namespace of a process in
// its cgroup (or children) that holds the pod's address; refusals name why. The real check
// (binding to the address inside the namespace) runs in the simulator tests.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isWeftError } from '../../../src/core/errors.ts';
import { RedirectErrors } from '../../../src/redirect/errors.ts';
import { cgroupPids, podNetns } from '../../../src/redirect/pod-netns.ts';

function fakeCgroup(t: { after(fn: () => void): void }, layout: Record<string, number[]>): string {
  const root = mkdtempSync(join(tmpdir(), 'weft-pod-netns-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const [dir, pids] of Object.entries(layout)) {
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, dir, 'cgroup.procs'), pids.map((p) => `${p}\n`).join(''));
  }
  return root;
}

test('pids come from the cgroup and its children (kubelet puts containers in child cgroups)', (t) => {
  const root = fakeCgroup(t, { '.': [], pause: [process.pid], 'app/sub': [process.ppid] });
  assert.deepEqual(cgroupPids(root).sort(), [process.pid, process.ppid].sort());
});

test('the namespace must hold the pod address; a process elsewhere is passed over', (t) => {
  const root = fakeCgroup(t, { '.': [process.pid] });
  const pod = { podId: 'shop/web', ip: '198.18.1.10', cgroupPath: root };
  assert.equal(podNetns(pod, (path) => path === `/proc/${process.pid}/ns/net`), `/proc/${process.pid}/ns/net`);
  assert.throws(() => podNetns(pod, () => false), (err: unknown) => isWeftError(err, RedirectErrors.BAD_TARGET)
    && /none of the 1 process\(es\) in .* is in a network namespace holding 198\.18\.1\.10/.test(err.message));
});

test('refusals: no process yet; an explicit namespace without the address', (t) => {
  const empty = fakeCgroup(t, { '.': [] });
  assert.throws(() => podNetns({ podId: 'shop/web', ip: '198.18.1.10', cgroupPath: empty }, () => true),
    (err: unknown) => isWeftError(err, RedirectErrors.BAD_TARGET) && /no process in its cgroup .* yet/.test(err.message));
  assert.throws(() => podNetns({ podId: 'shop/web', ip: '198.18.1.10', cgroupPath: empty, netnsPath: '/run/netns/x' }, () => false),
    (err: unknown) => isWeftError(err, RedirectErrors.BAD_TARGET) && /198\.18\.1\.10 is not in the network namespace \/run\/netns\/x/.test(err.message));
  assert.equal(podNetns({ podId: 'shop/web', ip: '198.18.1.10', cgroupPath: empty, netnsPath: '/run/netns/x' }, () => true), '/run/netns/x');
});
