// `weft check` for real: on this machine it passes (every program, helper and map type the
// BPF object uses is in this kernel, iptables works, the process has the capabilities); with
// a feature taken away (kernel BTF hidden in a private mount namespace, or bpftool gone) it
// names the missing one; and inside the agent's container of the rendered install (as
// `kubectl -n weft-system exec ds/weft-agent -- weft check` runs it: the container's mount and
// network namespaces, user and capabilities) it checks the running agent: control plane
// connection by the chart's Service name and trust bundle, certificates and the capture of
// every enrolled pod.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { INSTALL_MANIFEST, simCluster, uniqueName, weft, WEFT } from '../support/sim.ts';
import { bpfProgramSections } from '../../src/redirect/bpf-object.ts';

interface Report { ok: boolean; checks: { group: string; id: string; what: string; status: string; detail?: string }[] }

function run(command: readonly string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0] ?? '', command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status: status ?? -1, stdout, stderr }));
  });
}

const byId = (r: Report, id: string) => r.checks.find((c) => c.id === id) ?? assert.fail(`no check ${id} in ${r.checks.map((c) => c.id).join(', ')}`);

test('weft check passes on this machine, with a check for every program of the BPF object', { timeout: 60_000 }, async (t) => {
  if (!needsRoot(t, ['bpftool', 'iptables', 'unshare'])) return;
  const r = await weft(['check', '--json', '--agent', 'none']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as Report;
  assert.equal(report.ok, true);
  assert.deepEqual(report.checks.filter((c) => c.status !== 'pass'), []);
  const sections = bpfProgramSections(readFileSync(join(import.meta.dirname, '..', '..', 'bpf', 'build', 'redirect.bpf.o'))).map((p) => p.section);
  for (const s of sections) assert.equal(byId(report, `program:${s}`).status, 'pass', s);
  for (const id of ['btf', 'cgroup2', 'bpftool', 'iptables:dnat', 'iptables:conntrack', 'iptables:tproxy', 'capability:CAP_BPF', 'native-addon']) assert.equal(byId(report, id).status, 'pass', id);
  const text = await weft(['check', '--agent', 'none']);
  assert.match(text.stdout, /^ebpf\n {2}✔ kernel: Linux /m);
  assert.match(text.stdout, /\d+ passed, 0 failed, 0 warnings, 0 skipped\n$/);
});

test('weft check names the missing feature when one is taken away', { timeout: 60_000 }, async (t) => {
  if (!needsRoot(t, ['bpftool', 'unshare', 'mount'])) return;
  // Kernel BTF hidden under a tmpfs, in a mount namespace of our own.
  const hide = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs none /sys/kernel/btf && exec "$0" "$@"', WEFT, 'check', '--json', '--agent', 'none'];
  const strict = await run([...hide, '--mode', 'ebpf']);
  assert.equal(strict.status, 1, 'with --mode ebpf the check fails');
  const report = JSON.parse(strict.stdout) as Report;
  assert.equal(byId(report, 'btf').status, 'fail');
  assert.match(byId(report, 'btf').detail ?? '', /no BTF at \/sys\/kernel\/btf\/vmlinux \(needs CONFIG_DEBUG_INFO_BTF=y\)/);
  assert.deepEqual(report.checks.filter((c) => c.status === 'fail').map((c) => c.id), ['btf'], 'only the missing feature fails');
  const auto = await run(hide);
  assert.equal(auto.status, 0, 'under --mode auto iptables still works, so it is a warning');
  assert.match(byId(JSON.parse(auto.stdout) as Report, 'btf').detail ?? '', /falls back to iptables/);
  // bpftool taken away.
  const noTool = await weft(['check', '--json', '--agent', 'none', '--mode', 'ebpf', '--bpftool', '/nonexistent/bpftool']);
  assert.equal(noTool.status, 1);
  assert.match(byId(JSON.parse(noTool.stdout) as Report, 'bpftool').detail ?? '', /bpftool is not usable .*install it \(Debian: apt-get install bpftool\)/);
});

test('weft check in the installed agent\'s container: the agent, its control plane, certificates and every enrolled pod\'s capture', { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'bpftool', 'unshare', 'setpriv'])) return;
  const name = uniqueName('ck');
  const s = await simCluster(t, name, ['--nodes', '2', '--pods-per-node', '2', '--mesh', 'ebpf', '--install', INSTALL_MANIFEST]);
  // The chart's own names: the control plane's Service, the trust bundle's mount.
  const inNode = (n: string) => weft(['sim', 'exec', '--name', name, `agent/${n}`, '--', WEFT, 'check', '--json', '--mode', 'ebpf',
    '--control', 'weft-control.weft-system.svc:15010', '--ca-file', '/var/run/weft-ca/root-cert.pem'], { timeoutMs: 60_000 });
  // The README's own command (`kubectl -n weft-system exec ds/weft-agent -- weft check`), as it stands.
  const bare = await weft(['sim', 'exec', '--name', name, 'agent/node-1', '--', WEFT, 'check'], { timeoutMs: 60_000 });
  assert.equal(bare.status, 0, bare.stdout + bare.stderr);
  assert.match(bare.stdout, /✔ .*\n[^]*0 failed/);
  const r = await inNode('node-1');
  const report = JSON.parse(r.stdout) as Report;
  assert.equal(r.status, 0, JSON.stringify(report.checks.filter((c) => c.status !== 'pass'), null, 1));
  assert.equal(byId(report, 'agent').detail, 'node node-1');
  assert.match(byId(report, 'control').detail ?? '', /^connected; config version /);
  assert.match(byId(report, 'control-tls').detail ?? '', /TLSv1\.3, spiffe:\/\/cluster\.local\/ns\/weft-system\/sa\/weft-control/);
  assert.equal(byId(report, 'node-certificate').status, 'pass');
  const mine = s.pods.filter((p) => p.node === 'node-1' && p.enrolled).map((p) => `capture:${p.namespace}/${p.name}`).sort();
  assert.deepEqual(report.checks.filter((c) => c.id.startsWith('capture:')).map((c) => `${c.id} ${c.status}`).sort(), mine.map((id) => `${id} pass`));
  assert.ok(report.checks.some((c) => c.id.startsWith('certificate:spiffe://') && c.status === 'pass'));

  // With the control plane gone the agent keeps serving, and check says what is wrong.
  const stop = await weft(['sim', 'mesh', '--name', name, 'stop', 'control']);
  assert.equal(stop.status, 0, stop.stderr);
  let down: Report | undefined;
  for (let i = 0; i < 40 && down === undefined; i++) {
    const again = JSON.parse((await inNode('node-1')).stdout) as Report;
    if (byId(again, 'control').status === 'fail') down = again;
    else await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.ok(down !== undefined, 'check noticed the control plane is gone');
  assert.match(byId(down, 'control').detail ?? '', /not connected \(serving the last good config\)/);
  assert.equal(byId(down, 'control-tls').status, 'fail');
  assert.equal(down.ok, false);
});
