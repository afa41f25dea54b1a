// Reading the rendered install: CRDs first, the workloads found by the weft subcommand they
// run, the simulator's overrides applied as named patches; manifests it cannot run refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { installSet, setFlag } from '../../../../src/sim/install/objects.ts';
import { installPlanManifests, installPods } from '../../../../src/sim/install/install.ts';

const rendered = { path: 'deploy/weft.yaml', text: readFileSync(join(import.meta.dirname, '../../../../deploy/weft.yaml'), 'utf8') };
const argsOf = (t: Record<string, unknown>): string[] => ((t.spec as { containers: { args: string[] }[] }).containers[0]?.args ?? []);

test('setFlag replaces a value in either spelling, or appends', () => {
  assert.deepEqual(setFlag(['agent', '--mode', 'auto'], '--mode', 'ebpf'), ['agent', '--mode', 'ebpf']);
  assert.deepEqual(setFlag(['agent', '--mode=auto'], '--mode', 'iptables'), ['agent', '--mode=iptables']);
  assert.deepEqual(setFlag(['agent'], '--mode', 'ebpf'), ['agent', '--mode', 'ebpf']);
});

test('deploy/weft.yaml: CRDs first, the control Deployment (2 replicas) and the agent DaemonSet, patches named', () => {
  const set = installSet([rendered], { agentMode: 'iptables', agentArgs: ['--workers', '1'], controlAddonArgs: ['--prometheus', 'http://198.18.0.2:9090'] });
  assert.equal(set.objects[0]?.kind, 'CustomResourceDefinition');
  assert.deepEqual(set.workloads.map((w) => `${w.kind}/${w.name}:${w.role}:${w.replicas}`), ['DaemonSet/weft-agent:agent:undefined', 'Deployment/weft-control:control:2']);
  const agent = set.workloads.find((w) => w.role === 'agent') ?? assert.fail();
  const args = argsOf(agent.template);
  assert.equal(args[args.indexOf('--mode') + 1], 'iptables');
  assert.deepEqual(args.slice(-2), ['--workers', '1']);
  const stored = set.objects.find((o) => o.kind === 'DaemonSet') ?? assert.fail();
  assert.deepEqual(argsOf((stored.spec as { template: Record<string, unknown> }).template), args, 'the API holds what runs');
  assert.equal(set.patches.length, 3);
  assert.match(set.patches.join('\n'), /DaemonSet\/weft-system\/weft-agent: --mode iptables \(sim up --mesh\)/);
  const unpatched = installSet([rendered]);
  assert.deepEqual(unpatched.patches, []);
  const a = argsOf(unpatched.workloads.find((w) => w.role === 'agent')?.template ?? {});
  assert.equal(a[a.indexOf('--mode') + 1], 'auto', "the chart's own mode");
});

test('install pods: replicas spread over nodes, one agent per node, stable UIDs; the plan gets the non-hostNetwork ones', () => {
  const set = installSet([rendered]);
  const pods = installPods(set, ['node-1', 'node-2', 'node-3'], 'seed');
  assert.deepEqual(pods.map((p) => `${p.component}@${p.node}`), ['agent/node-1@node-1', 'agent/node-2@node-2', 'agent/node-3@node-3', 'control/0@node-1', 'control/1@node-2']);
  assert.deepEqual(installPods(set, ['node-1', 'node-2', 'node-3'], 'seed'), pods);
  assert.notEqual(installPods(set, ['node-1'], 'other')[0]?.uid, pods[0]?.uid);
  const plan = installPlanManifests(set, pods).text;
  assert.match(plan, /name: weft-control-0/);
  assert.match(plan, /name: weft-control-1/);
  assert.doesNotMatch(plan, /weft-agent-node-1/);
});

test('an install without a control plane or agent, or with a container-less workload, is refused', () => {
  const only = (kind: string, args: string[]) => ({ path: 'x.yaml', text: `apiVersion: apps/v1\nkind: ${kind}\nmetadata: { name: w, namespace: weft-system }\nspec:\n  template:\n    spec:\n      containers: [{ name: c, image: i, args: ${JSON.stringify(args)} }]\n` });
  assert.throws(() => installSet([only('DaemonSet', ['agent'])]), (e: Error & { code?: string }) => e.code === 'WEFT_SIM_BAD_MANIFEST' && /must hold a workload running `weft control`/.test(e.message));
  assert.throws(() => installSet([{ path: 'x.yaml', text: 'apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: w }\nspec: { template: { spec: { containers: [] } } }\n' }]), /spec\.template\.spec\.containers is empty/);
  assert.throws(() => installSet([{ path: 'bad.yaml', text: 'kind: [\n' }]), /the install manifests have 1 problem/);
  const many = { path: 'y.yaml', text: `${only('Deployment', ['control']).text.replace('spec:\n', 'spec:\n  replicas: 9\n')}---\n${only('DaemonSet', ['agent']).text.replace('name: w', 'name: a')}` };
  assert.throws(() => installSet([many]), /spec\.replicas 9: the simulator runs 0 to 5 replicas/);
});
