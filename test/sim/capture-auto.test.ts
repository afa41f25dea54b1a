// --mode auto: the agent probes eBPF and falls back to iptables when a named feature is
// missing, says which in one log line, and exports weft_capture_mode{mode}. The failure is
// forced for real: the agent is pointed at a bpftool that does not exist.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName } from '../support/sim.ts';
import { agentMetrics, nodeGet } from './mesh-support.ts';

async function captureDump(s: Parameters<typeof nodeGet>[0]): Promise<{ mode: string; requested: string; enrolled: string[] }> {
  const r = await nodeGet(s, 'node-1', 'http://127.0.0.1:15000/config_dump');
  assert.equal(r.code, 200);
  return (JSON.parse(r.body) as { capture: { mode: string; requested: string; enrolled: string[] } }).capture;
}

function modeGauge(metrics: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of metrics.matchAll(/^weft_capture_mode\{mode="(\w+)"\} (\d+)$/gm)) out[m[1] ?? ''] = Number(m[2]);
  return out;
}

test('--mode auto takes eBPF where every feature is present', { timeout: 180_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'bpftool'])) return;
  const name = uniqueName('au');
  const s = await simCluster(t, name, ['--nodes', '1', '--pods-per-node', '2', '--mesh', 'auto']);
  assert.deepEqual(modeGauge(await agentMetrics(s, 'node-1')), { ebpf: 1, iptables: 0, off: 0 });
  const dump = await captureDump(s);
  assert.equal(dump.mode, 'ebpf');
  assert.equal(dump.requested, 'auto');
  const log = readFileSync(`/run/weft/sim/${name}/logs/agent-node-1.log`, 'utf8');
  assert.match(log, /capture mode auto: eBPF \(every feature it needs is present\)/);
});

test('--mode auto falls back to iptables when a feature is missing, naming it once', { timeout: 180_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'iptables-save'])) return;
  const name = uniqueName('af');
  const s = await simCluster(t, name, ['--nodes', '1', '--pods-per-node', '2', '--mesh', 'auto', '--agent-args', '--bpftool /nonexistent/bpftool']);
  assert.deepEqual(modeGauge(await agentMetrics(s, 'node-1')), { ebpf: 0, iptables: 1, off: 0 });
  const dump = await captureDump(s);
  assert.equal(dump.mode, 'iptables');
  assert.deepEqual(dump.enrolled.sort(), s.pods.map((p) => `${p.namespace}/${p.name}`).sort());
  const log = readFileSync(`/run/weft/sim/${name}/logs/agent-node-1.log`, 'utf8');
  const lines = log.split('\n').filter((l) => l.includes('capture mode auto'));
  assert.equal(lines.length, 1, `one line says which mode and why: ${lines.join('\n')}`);
  assert.match(lines[0] ?? '', /capture mode auto: iptables, because eBPF capture is not possible here: bpftool: bpftool is not usable/);
  // The fallback captures: a VIP (routed nowhere without capture) answers, through WEFT nat rules.
  const from = s.pods[0] ?? assert.fail();
  const svc = s.services[0] ?? assert.fail();
  const r = await inPod(name, from.name, ['curl', '-s', '-m', '5', `http://${svc.vip}:${svc.ports[0]?.port}/`]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^hello from /);
  const nat = execFileSync('nsenter', [`--net=/run/netns/${s.nodes[0]?.netns}`, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });
  assert.match(nat, /WEFT/);
});
