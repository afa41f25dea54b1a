import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  containerCgroupName, nodeRootFromOwnCgroup, parseQuantity, podCgroupCandidates, podCgroupRelative, qosClass, type ContainerResources,
} from '../../../src/core/kubelet-cgroups.ts';

const UID = '5e3c9f1a-2b4d-4c6e-8f0a-1b2c3d4e5f60';

test('pod cgroup names, as the kubelet makes them under each driver and QoS class', () => {
  const cases: Array<[Parameters<typeof podCgroupRelative>, string]> = [
    [['systemd', 'Guaranteed', UID], 'kubepods.slice/kubepods-pod5e3c9f1a_2b4d_4c6e_8f0a_1b2c3d4e5f60.slice'],
    [['systemd', 'Burstable', UID], 'kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5e3c9f1a_2b4d_4c6e_8f0a_1b2c3d4e5f60.slice'],
    [['systemd', 'BestEffort', UID], 'kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod5e3c9f1a_2b4d_4c6e_8f0a_1b2c3d4e5f60.slice'],
    [['cgroupfs', 'Guaranteed', UID], `kubepods/pod${UID}`],
    [['cgroupfs', 'Burstable', UID], `kubepods/burstable/pod${UID}`],
    [['cgroupfs', 'BestEffort', UID], `kubepods/besteffort/pod${UID}`],
  ];
  for (const [args, want] of cases) assert.equal(podCgroupRelative(...args), want, args.join(' '));
  assert.equal(containerCgroupName('systemd', 'abc'), 'cri-containerd-abc.scope');
  assert.equal(containerCgroupName('cgroupfs', 'abc'), 'abc');
  assert.deepEqual(podCgroupCandidates(UID), cases.map(([, want]) => want), 'every candidate, systemd first');
});

test('the node cgroup root is what lies above kubepods in a process\'s own cgroup', () => {
  const cases: Array<[string, string | undefined]> = [
    ['/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podx.slice/cri-containerd-1.scope', '/'],
    ['/kubepods/besteffort/podx/1', '/'],
    ['/weft-demo/node-2/kubepods.slice/kubepods-podx.slice/cri-containerd-1.scope', '/weft-demo/node-2'],
    ['/system.slice/kubelet.service', undefined],
    ['/', undefined],
  ];
  for (const [own, want] of cases) assert.equal(nodeRootFromOwnCgroup(own), want, own);
});

test('quantities', () => {
  const cases: Array<[unknown, number | undefined]> = [
    ['100m', 0.1], ['0.1', 0.1], ['1', 1], [2, 2], ['128Mi', 128 * 2 ** 20], ['1G', 1e9], ['1.5Gi', 1.5 * 2 ** 30], ['1e3', 1000],
    ['', undefined], ['ten', undefined], ['1Q', undefined], [null, undefined],
  ];
  for (const [q, want] of cases) assert.equal(parseQuantity(q), want, String(q));
});

test('QoS class from the containers\' requests and limits', () => {
  const c = (requests?: Record<string, string>, limits?: Record<string, string>): ContainerResources => ({ ...(requests ? { requests } : {}), ...(limits ? { limits } : {}) });
  const full = { cpu: '500m', memory: '128Mi' };
  const cases: Array<[string, ContainerResources[], string]> = [
    ['nothing set', [c(), c()], 'BestEffort'],
    ['no containers', [], 'BestEffort'],
    ['limits only: requests default to them', [c(undefined, full)], 'Guaranteed'],
    ['equal requests and limits, spelled differently', [c({ cpu: '0.5', memory: '134217728' }, full)], 'Guaranteed'],
    ['requests below limits', [c({ cpu: '100m', memory: '64Mi' }, full)], 'Burstable'],
    ['a cpu limit only', [c(undefined, { cpu: '1' })], 'Burstable'],
    ['one guaranteed, one best-effort container', [c(undefined, full), c()], 'Burstable'],
    ['requests only', [c({ cpu: '100m' })], 'Burstable'],
    ['other resources do not count', [c({ 'ephemeral-storage': '1Gi' })], 'BestEffort'],
  ];
  for (const [what, containers, want] of cases) assert.equal(qosClass(containers), want, what);
});
