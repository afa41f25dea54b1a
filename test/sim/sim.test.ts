// The simulator end to end, as root: a real 2-node cluster, traffic across nodes, and
// nothing left behind.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName, weft } from '../support/sim.ts';
import { findCgroup2Mount } from '../../src/core/cgroup2.ts';
import { alive } from '../../src/sim/processes.ts';

const rootLinks = () => execFileSync('ip', ['-o', 'link', 'show']).toString().split('\n').map((l) => l.split(':')[1]?.trim()).sort();
const netnsList = () => execFileSync('ip', ['netns', 'list']).toString();

test('2 nodes x 3 pods: pods reach pods across nodes, VIPs route nowhere, down removes everything', async (t) => {
  if (!needsRoot(t, ['curl', 'ip', 'nsenter'])) return;
  const linksBefore = rootLinks();
  const name = uniqueName('s');
  const s = await simCluster(t, name, ['--nodes', '2', '--pods-per-node', '3', '--mesh', 'off']);

  assert.equal(s.name, name);
  assert.equal(s.nodes.length, 2);
  assert.equal(s.pods.length, 6);
  for (const p of s.pods) {
    assert.match(p.ip, /^198\.1[89]\./, `${p.name} has a benchmarking-range address`);
    assert.ok(p.netns.startsWith(`weft-${name}-`));
    assert.ok(existsSync(`/run/netns/${p.netns}`));
    assert.ok(existsSync(p.cgroup), `cgroup ${p.cgroup} exists`);
  }
  const from = s.pods.find((p) => p.node === 'node-1');
  const to = s.pods.find((p) => p.node === 'node-2');
  assert.ok(from && to);

  // The workload runs in its container's cgroup, inside its pod's, named as the kubelet (systemd driver) names them.
  const cg = await inPod(name, from.name, ['cat', '/proc/self/cgroup']);
  assert.equal(from.cgroup, join(findCgroup2Mount() ?? '', `weft-${name}/node-1/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${from.uid.replaceAll('-', '_')}.slice`));
  assert.match(cg.stdout, new RegExp(`0::${from.containerCgroup.slice((findCgroup2Mount() ?? '').length).replace(/\./g, '\\.')}\\n`));
  assert.match(from.containerCgroup, /\/cri-containerd-[0-9a-f]{64}\.scope$/);

  const r = await inPod(name, from.name, ['curl', '-s', '-m', '5', `http://${to.ip}:8080/`]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`hello from ${to.name} ns=${to.namespace} node=node-2 client=${from.ip.replace(/\./g, '\\.')}:`));

  const svc = s.services[0];
  assert.ok(svc);
  const vip = await inPod(name, from.name, ['curl', '-s', '-m', '3', `http://${svc.vip}:${svc.ports[0]?.port}/`]);
  assert.notEqual(vip.status, 0, 'a service VIP routes nowhere without the mesh');

  // Nothing of the simulator is linked to the root network namespace.
  assert.deepEqual(rootLinks(), linksBefore);

  const d = await weft(['sim', 'down', '--name', name]);
  assert.equal(d.status, 0, d.stderr);
  assert.doesNotMatch(netnsList(), new RegExp(`weft-${name}-`));
  assert.equal(existsSync(join(findCgroup2Mount() ?? '/nonexistent', `weft-${name}`)), false, 'cgroup tree removed');
  for (const p of s.pods) assert.equal(alive(p.pid), false, `workload ${p.name} stopped`);
  assert.deepEqual(rootLinks(), linksBefore);
});

test('two clusters side by side, and a crashed one is reclaimed by down', async (t) => {
  if (!needsRoot(t, ['curl'])) return;
  const a = uniqueName('a');
  const b = uniqueName('b');
  const sa = await simCluster(t, a, ['--nodes', '1', '--pods-per-node', '2', '--mesh', 'off']);
  const sb = await simCluster(t, b, ['--nodes', '1', '--pods-per-node', '2', '--mesh', 'off']);
  // Same addresses, different namespaces: each answers with its own pods.
  assert.equal(sa.pods[1]?.ip, sb.pods[1]?.ip);
  const ra = await inPod(a, sa.pods[0]?.name ?? '', ['curl', '-s', '-m', '5', `http://${sa.pods[1]?.ip}:8080/`]);
  assert.match(ra.stdout, /hello from hello-1-1/);

  // Simulate a crash: the state file vanishes; down still finds everything by prefix.
  execFileSync('rm', ['-f', `/run/weft/sim/${b}/state.json`]);
  const d = await weft(['sim', 'down', '--name', b]);
  assert.equal(d.status, 0, d.stderr);
  assert.doesNotMatch(netnsList(), new RegExp(`weft-${b}-`));
  for (const p of sb.pods) assert.equal(alive(p.pid), false);
  const still = await inPod(a, sa.pods[0]?.name ?? '', ['curl', '-s', '-m', '5', `http://${sa.pods[1]?.ip}:8080/`]);
  assert.equal(still.status, 0, 'the other cluster is untouched');
});

test('bad input is refused with a clear message', async (t) => {
  if (!needsRoot(t, ['setpriv'])) return;
  const name = uniqueName('e');
  const cases: [string[], RegExp][] = [
    [['sim', 'up', '--name', name, '--nodes', '0'], /--nodes must be a whole number from 1/],
    [['sim', 'up', '--name', name], /--nodes is required/],
    [['sim', 'status', '--name', 'nosuch'], /no simulated cluster named "nosuch"/],
    [['sim', 'bogus'], /unknown sim subcommand "bogus"/],
  ];
  for (const [args, message] of cases) {
    const r = await weft(args);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, message);
  }

  const dir = mkdtempSync(join(tmpdir(), 'weft-manifests-'));
  writeFileSync(join(dir, 'pods.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    ports:\n    - containerPort: 99999\n');
  const bad = await weft(['sim', 'up', '--name', name, '--nodes', '1', '--manifests', dir]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /pods\.yaml: Pod\/(default\/)?web: spec\.containers\[0\]\.ports\[0\]\.containerPort: must be a port number/);
  assert.doesNotMatch(netnsList(), new RegExp(`weft-${name}-`), 'a refused manifest builds nothing');

  const notRoot = await weft(['sim', 'up', '--name', name, '--nodes', '1'], { wrap: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] });
  assert.equal(notRoot.status, 1);
  assert.match(notRoot.stderr, /weft sim needs root/);

  await simCluster(t, name, ['--nodes', '1', '--pods-per-node', '1', '--mesh', 'off']);
  const again = await weft(['sim', 'up', '--name', name, '--nodes', '1']);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /cluster "[a-z0-9]+" is already up; pick another --name/);
  const unknownPod = await weft(['sim', 'exec', '--name', name, 'nosuchpod', '--', 'true']);
  assert.equal(unknownPod.status, 1);
  assert.match(unknownPod.stderr, /no pod "nosuchpod" in cluster/);
  const ok = await weft(['sim', 'exec', '--name', name, 'echo-1-0', '--', 'sh', '-c', 'exit 3']);
  assert.equal(ok.status, 3, 'exec passes the command\'s exit code through');
});
