// The agent finds pods by UID where the kubelet puts them, under both cgroup drivers: the
// simulator lays each pod's cgroup out by UID and QoS class (kubepods.slice/... with the
// systemd driver, kubepods/... with cgroupfs), the agent is given no template, and every
// pod's calls to a service VIP (which routes nowhere unless captured) are captured.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName } from '../support/sim.ts';
import { nodeGet } from './mesh-support.ts';

const VIP = '198.19.0.40';

function manifests(): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-pod-cgroups-'));
  const pod = (name: string, resources: object) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'qos', labels: { app: 'echo' } },
    spec: { nodeName: 'node-1', containers: [{ name: 'app', image: 'weft/echo', ports: [{ containerPort: 8080 }], resources }] },
  });
  const docs = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'qos', labels: { 'weft.dev/mesh': 'enabled' } } },
    pod('guaranteed', { limits: { cpu: '200m', memory: '64Mi' } }),
    pod('burstable', { requests: { cpu: '50m' } }),
    pod('besteffort', {}),
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo', namespace: 'qos' }, spec: { clusterIP: VIP, selector: { app: 'echo' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
  ];
  writeFileSync(join(dir, 'qos.yaml'), docs.map((d) => stringify(d)).join('---\n'));
  return dir;
}

const LAYOUT: Record<string, Record<string, (uid: string) => string>> = {
  systemd: {
    Guaranteed: (u) => `kubepods.slice/kubepods-pod${u.replaceAll('-', '_')}.slice`,
    Burstable: (u) => `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${u.replaceAll('-', '_')}.slice`,
    BestEffort: (u) => `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${u.replaceAll('-', '_')}.slice`,
  },
  cgroupfs: {
    Guaranteed: (u) => `kubepods/pod${u}`,
    Burstable: (u) => `kubepods/burstable/pod${u}`,
    BestEffort: (u) => `kubepods/besteffort/pod${u}`,
  },
};

for (const driver of ['systemd', 'cgroupfs']) {
  test(`eBPF capture finds pods by UID under the ${driver} cgroup driver`, { timeout: 240_000 }, async (t) => {
    if (!needsRoot(t, ['curl', 'nsenter', 'bpftool'])) return;
    const dir = manifests();
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const name = uniqueName('cg');
    const s = await simCluster(t, name, ['--nodes', '1', '--manifests', dir, '--mesh', 'ebpf', '--cgroup-driver', driver]);
    assert.equal(s.cgroupDriver, driver);
    const node = s.nodes[0] ?? assert.fail('no node');
    assert.deepEqual(s.pods.map((p) => `${p.name} ${p.qos}`).sort(), ['besteffort BestEffort', 'burstable Burstable', 'guaranteed Guaranteed']);
    const dumped = await nodeGet(s, 'node-1', 'http://127.0.0.1:15000/config_dump');
    assert.equal(dumped.code, 200);
    const dump = JSON.parse(dumped.body) as { capture: { enrolled: string[] } };
    assert.deepEqual(dump.capture.enrolled, ['qos/besteffort', 'qos/burstable', 'qos/guaranteed']);
    for (const p of s.pods) {
      const layout = LAYOUT[driver]?.[p.qos] ?? assert.fail(`no layout for ${p.qos}`);
      assert.equal(p.cgroup, join(node.cgroup, layout(p.uid)), `${p.name}: the kubelet's path`);
      const tree = spawnSync('bpftool', ['-j', 'cgroup', 'tree', p.cgroup], { encoding: 'utf8' });
      const entries = JSON.parse(tree.stdout) as { cgroup: string; programs: { name: string; attach_type: string }[] }[];
      const own = entries.find((e) => e.cgroup.replace(/\/$/, '') === p.cgroup);
      const attached = own?.programs.map((x) => x.attach_type) ?? [];
      for (const type of ['cgroup_inet4_connect', 'cgroup_sock_ops']) assert.ok(attached.includes(type), `${p.name}: ${type} attached at its pod cgroup (got ${attached.join(', ')})`);
      const r = await inPod(name, p.name, ['curl', '-s', '-m', '5', `http://${VIP}/`]);
      assert.equal(r.status, 0, `${p.name} -> VIP: ${r.stderr}`);
      assert.match(r.stdout, /^hello from (guaranteed|burstable|besteffort) ns=qos/);
    }
  });
}
