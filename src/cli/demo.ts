// `weft demo` (what `npm start` runs): a simulated cluster with sample services and a
// client in a pod calling them, with a live summary, torn down on Ctrl-C or after
// --duration seconds.

import { setTimeout as sleep } from 'node:timers/promises';
import { down, podPlacement, up } from '../sim/cluster.ts';
import { runInside } from '../sim/processes.ts';
import { readState, type ClusterState, type MeshMode } from '../sim/state.ts';
import { intFlag, oneOf, parseFlags } from './args.ts';

const USAGE = 'weft demo [--name NAME] [--nodes N] [--duration SECONDS] [--mesh off|ebpf|iptables]';

async function curl(state: ClusterState, fromPod: string, url: string): Promise<string> {
  const pod = state.plan.pods.find((p) => p.name === fromPod);
  if (pod === undefined) return 'no such pod';
  let out = '';
  const { child, done } = runInside(podPlacement(state, pod), ['curl', '-s', '-m', '2', url], ['ignore', 'pipe', 'ignore']);
  child.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
  const code = await done;
  return code === 0 ? out.trim() : `curl exit ${code}`;
}

export async function demoCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    name: { type: 'string' }, nodes: { type: 'string' }, duration: { type: 'string' }, mesh: { type: 'string' },
  }, USAGE);
  const name = values.name ?? 'demo';
  const nodes = intFlag(values.nodes, '--nodes', 2, USAGE);
  const duration = intFlag(values.duration, '--duration', 0, USAGE);
  const mesh: MeshMode = oneOf(values.mesh, '--mesh', ['off', 'ebpf', 'iptables'] as const, 'ebpf', USAGE);
  const out = (line: string) => process.stdout.write(`${line}\n`);

  // The demo owns its cluster name: a run that crashed before is cleaned up first.
  await down(name);
  const state = await up({ name, nodes, podsPerNode: 3, manifests: undefined, mesh, log: (l) => out(`  ${l}`) });
  let stopping = false;
  const stop = () => { stopping = true; };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const client = state.plan.pods[0];
    const targets = state.plan.pods.filter((p) => p.node !== client?.node);
    out(`\nweft demo: cluster "${name}" with ${state.plan.nodes.length} nodes and ${state.plan.pods.length} pods (mesh: ${mesh})`);
    out(`  status:   npx weft sim status --name ${name}`);
    out(`  a shell:  npx weft sim exec --name ${name} ${client?.name} -- sh`);
    out(`  logs:     /run/weft/sim/${name}/logs/`);
    out(`  client ${client?.name} on ${client?.node} calls ${mesh === 'off' ? 'pods on the other node by IP' : 'the services by VIP'} every second; Ctrl-C tears everything down.\n`);
    const started = Date.now();
    let i = 0;
    while (!stopping && (duration === 0 || Date.now() - started < duration * 1000)) {
      const target = mesh === 'off' ? targets[i % targets.length] : undefined;
      const service = state.plan.services[i % state.plan.services.length];
      const url = target !== undefined ? `http://${target.ip}:8080/` : `http://${service?.vip}:${service?.ports[0]?.port}/`;
      out(`  [${new Date().toISOString().slice(11, 19)}] ${client?.name} -> ${url}  ${await curl(readState(name), client?.name ?? '', url)}`);
      i++;
      await sleep(1000);
    }
  } finally {
    out('\ntearing down...');
    await down(name);
    out('done: no namespaces, cgroups or processes of the demo are left.');
  }
  return 0;
}
