// The weft path: enrolled client pod -> (captured by eBPF) -> node-1's agent -> same node:
// the server pod; other node: mTLS tunnel on 15008 -> node-2's agent -> the server pod.
//
// THE HOOK. Nothing here needs editing when weft's data path lands, as long as:
//   1. `weft sim up --mesh ebpf` starts one agent per node and records its PID in the
//      cluster state as mesh_processes["agent/<node>"] (status --json: meshProcesses);
//   2. pods in a namespace labelled weft.dev/mesh=enabled are captured, and a Service VIP
//      with one endpoint reaches that endpoint (same node directly, other node over 15008).
// The probe below checks exactly that, by trying it; until it passes, the path is listed as
// "not available yet" with the reason. The client connects to a VIP (bench-mesh/local or
// /remote), never to a pod IP, so an uncaptured connection fails instead of silently
// measuring the direct path. If the agent's proxy runs as a separate process that is not a
// descendant of the agent PID, return its PIDs from `agentPids`.

import { alive } from '../../src/sim/processes.ts';
import { run } from '../../src/core/exec.ts';
import { MESH_VIPS, PORTS, type BenchCluster, type Variant } from '../cluster.ts';
import { RESPONSE_BYTES } from '../servers.ts';
import { runTool } from '../tools/exec.ts';
import { processTree } from '../tools/procstat.ts';
import { unavailablePath, type BenchPath } from './types.ts';

export const TUNNEL_PORT = 15008;

export interface WeftPathSetup {
  readonly cluster: BenchCluster;
  /** Why `weft sim up --mesh ebpf` failed, when it did (the cluster then runs without a mesh). */
  readonly meshUpFailure: string | undefined;
  readonly cpus: string;
}

/** PIDs of the agent of `node`, from the cluster state (undefined when there is none). */
export function agentPid(cluster: BenchCluster, node: string): number | undefined {
  const pid = cluster.refresh().mesh_processes[`agent/${node}`];
  return pid !== undefined && alive(pid) ? pid : undefined;
}

function agentPids(cluster: BenchCluster, variant: Variant): number[] {
  const nodes = [cluster.mesh.client.node, ...(variant === 'cross-node' ? [cluster.mesh.server['cross-node'].node] : [])];
  return nodes.map((n) => agentPid(cluster, n)).filter((p): p is number => p !== undefined);
}

/** One request through the mesh: "" when it worked, else why not. */
async function probe(cluster: BenchCluster, variant: Variant): Promise<string> {
  const url = `http://${MESH_VIPS[variant]}:${PORTS.http}/`;
  const r = await runTool(cluster.pod(cluster.mesh.client), ['curl', '-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', url], 8000);
  const want = `200 ${RESPONSE_BYTES}`;
  if (r.status === 0 && r.stdout.trim() === want) return '';
  return `a ${variant} request from ${cluster.mesh.client.namespace}/${cluster.mesh.client.name} to ${url} was not carried by the mesh (curl exit ${r.status}, got ${JSON.stringify(r.stdout.trim())}, want ${JSON.stringify(want)})`;
}

/** Tries the weft path; returns it usable, or listed with the reason it is not (yet). */
export async function startWeftPath(s: WeftPathSetup): Promise<BenchPath> {
  const { cluster } = s;
  const no = (why: string): BenchPath => unavailablePath('weft', `not available yet: ${why}`);
  if (s.meshUpFailure !== undefined) return no(s.meshUpFailure);
  if (cluster.state.mesh !== 'ebpf') return no(`the cluster runs with --mesh ${cluster.state.mesh}`);
  const nodes = [cluster.mesh.client.node, cluster.mesh.server['cross-node'].node];
  const missing = nodes.filter((n) => agentPid(cluster, n) === undefined);
  if (missing.length > 0) return no(`'weft sim up --mesh ebpf' started no agent on ${missing.join(', ')} (no live mesh_processes["agent/${missing[0]}"])`);
  for (const v of ['same-node', 'cross-node'] as const) {
    const why = await probe(cluster, v);
    if (why !== '') return no(why);
  }
  const node2 = cluster.node(cluster.mesh.server['cross-node'].node);
  const tunnel = await runTool(cluster.nodeRole(node2.name, 'bench-probe'), ['ss', '-Htn', 'state', 'established', `( sport = :${TUNNEL_PORT} )`], 5000);
  if (tunnel.stdout.trim() === '') return no(`cross-node traffic reached the server, but node-2 shows no established connection on the ${TUNNEL_PORT} tunnel port`);

  // Pin every thread of every agent to the proxy CPU, as HAProxy is (README: pinning).
  const roots = nodes.map((n) => agentPid(cluster, n)).filter((p): p is number => p !== undefined);
  for (const pid of roots.flatMap(processTree)) {
    await run('taskset', ['-a', '-p', '-c', s.cpus, String(pid)], { okStatus: [0, 1] });
  }
  return {
    name: 'weft',
    unavailable: undefined,
    route: (variant) => ({
      client: cluster.pod(cluster.mesh.client),
      server: cluster.pod(cluster.mesh.server[variant]),
      target: (service) => ({ host: MESH_VIPS[variant], port: PORTS[service] }),
      proxyPids: () => agentPids(cluster, variant),
      proxyCount: variant === 'same-node' ? 1 : 2,
    }),
    // The agents belong to the cluster: `weft sim down` stops them.
    close: () => Promise.resolve(),
  };
}

/** Whether a failed weft probe left mesh processes that could touch other paths' traffic. */
export function meshProcessesRunning(cluster: BenchCluster): boolean {
  return Object.values(cluster.refresh().mesh_processes).some(alive);
}
