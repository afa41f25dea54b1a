// The benchmark's simulated cluster: two nodes; on each, plain pods (namespace `bench`,
// not in the mesh) for the direct and HAProxy paths, and enrolled pods (`bench-mesh`) for
// weft. Each pod set has a client and a server on node-1 and a server on node-2, so every
// path has the same same-node and cross-node shapes. Built and removed with the real CLI.

import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { MESH_ENABLED, MESH_LABEL } from '../src/model/types.ts';
import { nodePlacement, podPlacement } from '../src/sim/cluster.ts';
import type { SimNode, SimPod } from '../src/sim/plan.ts';
import type { Placement } from '../src/sim/processes.ts';
import { readState, type ClusterState, type MeshMode } from '../src/sim/state.ts';

export const WEFT_CLI = join(import.meta.dirname, '..', 'bin', 'weft');

/**
 * The ports every benchmark server pod listens on (same in every pod). The Service port names
 * are these keys: `http` and `http2` are declared HTTP (weft's L7 path), the others undeclared.
 */
export const PORTS = { http: 8090, http2: 8091, sockperf: 11111, iperf: 5201, hold: 8092 } as const;
export type ServiceKind = keyof typeof PORTS;
export const SERVICE_KINDS = Object.keys(PORTS) as ServiceKind[];

export type Variant = 'same-node' | 'cross-node';

export const PLAIN_NAMESPACE = 'bench';
export const MESH_NAMESPACE = 'bench-mesh';
/** One VIP per mesh server pod, so the weft path cannot work unless traffic is captured. */
export const MESH_VIPS = { 'same-node': '198.19.1.10', 'cross-node': '198.19.1.11' } as const;

export interface PodSet {
  readonly client: SimPod;
  /** The server on the client's node, and the one on the other node. */
  readonly server: Readonly<Record<Variant, SimPod>>;
}

export interface BenchCluster {
  readonly name: string;
  readonly state: ClusterState;
  readonly plain: PodSet;
  readonly mesh: PodSet;
  node(name: string): SimNode;
  pod(p: SimPod): Placement;
  /** A cgroup for one role in a node (created here), e.g. `bench-haproxy`. */
  nodeRole(node: string, role: string): Placement;
  /** The state as it is now (mesh processes may be recorded after `up`). */
  refresh(): ClusterState;
}

const POD_NAMES = { client: 'client', same: 'server-local', cross: 'server-remote' } as const;

export function benchManifests(): string {
  const docs: unknown[] = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: PLAIN_NAMESPACE } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: MESH_NAMESPACE, labels: { [MESH_LABEL]: MESH_ENABLED } } },
  ];
  const ports = Object.entries(PORTS).map(([name, port]) => ({ name, port, targetPort: port, protocol: 'TCP' }));
  for (const ns of [PLAIN_NAMESPACE, MESH_NAMESPACE]) {
    const prefix = ns === MESH_NAMESPACE ? 'm-' : '';
    for (const sa of ['bench-client', 'bench-server']) docs.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: ns } });
    const pods: [string, string, string][] = [
      [POD_NAMES.client, 'node-1', 'bench-client'], [POD_NAMES.same, 'node-1', 'bench-server'], [POD_NAMES.cross, 'node-2', 'bench-server'],
    ];
    for (const [name, node, sa] of pods) {
      docs.push({
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name: `${prefix}${name}`, namespace: ns, labels: { app: `${prefix}${name}` } },
        spec: {
          nodeName: node, serviceAccountName: sa,
          containers: [{ name: 'bench', image: 'weft/bench', ports: Object.values(PORTS).map((p) => ({ containerPort: p })) }],
        },
      });
    }
  }
  for (const [variant, vip] of Object.entries(MESH_VIPS)) {
    docs.push({
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: variant === 'same-node' ? 'local' : 'remote', namespace: MESH_NAMESPACE },
      spec: { clusterIP: vip, selector: { app: `m-${variant === 'same-node' ? POD_NAMES.same : POD_NAMES.cross}` }, ports },
    });
  }
  return docs.map((d) => stringify(d)).join('---\n');
}

export interface CliResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

/** Runs the weft CLI with a time limit. */
export function weftCli(args: readonly string[], timeoutMs = 180_000): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(WEFT_CLI, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    timer.unref();
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ status: 127, stdout, stderr: `${stderr}${e.message}`, timedOut });
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status: status ?? -1, stdout, stderr, timedOut });
    });
  });
}

/**
 * `weft sim up` with the bench manifests; throws with the CLI's own message on failure.
 * Past `timeoutS` the CLI is killed (the caller runs `down`, which reclaims what it left).
 */
export async function upCluster(name: string, mesh: MeshMode, workDir: string, timeoutS = 180, agentArgs: readonly string[] = []): Promise<BenchCluster> {
  const dir = join(workDir, 'manifests');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bench.yaml'), benchManifests());
  const extra = agentArgs.length === 0 ? [] : ['--agent-args', agentArgs.join(' ')];
  const r = await weftCli(['sim', 'up', '--name', name, '--nodes', '2', '--manifests', dir, '--mesh', mesh, ...extra], timeoutS * 1000);
  if (r.timedOut) throw new Error(`weft sim up --mesh ${mesh} did not finish within ${timeoutS} s (raise the limit with --mesh-timeout)`);
  if (r.status !== 0) {
    // Progress lines (`sim NAME: ...`) say nothing about the failure.
    const why = r.stderr.trim().split('\n').filter((l) => l.trim() !== '' && !l.startsWith(`sim ${name}: `)).slice(-3).join(' | ');
    throw new Error(`weft sim up --mesh ${mesh} failed (exit ${r.status}): ${why}`);
  }
  return openCluster(name);
}

export function openCluster(name: string): BenchCluster {
  const state = readState(name);
  const find = (ns: string, pod: string): SimPod => {
    const p = state.plan.pods.find((x) => x.namespace === ns && x.name === pod);
    if (p === undefined) throw new Error(`cluster ${name} has no pod ${ns}/${pod}`);
    return p;
  };
  const set = (ns: string, prefix: string): PodSet => ({
    client: find(ns, `${prefix}${POD_NAMES.client}`),
    server: { 'same-node': find(ns, `${prefix}${POD_NAMES.same}`), 'cross-node': find(ns, `${prefix}${POD_NAMES.cross}`) },
  });
  return {
    name, state,
    plain: set(PLAIN_NAMESPACE, ''),
    mesh: set(MESH_NAMESPACE, 'm-'),
    node: (n) => {
      const found = state.plan.nodes.find((x) => x.name === n);
      if (found === undefined) throw new Error(`cluster ${name} has no node ${n}`);
      return found;
    },
    pod: (p) => podPlacement(state, p),
    nodeRole: (node, role) => {
      const where = nodePlacement(state, node, role);
      mkdirSync(where.cgroup, { recursive: true });
      return where;
    },
    refresh: () => readState(name),
  };
}

/**
 * `weft sim down`; never throws (cleanup must go on), returns the problem instead. Tried up
 * to three times: a just-killed process stays in its cgroup until it is reaped, and the
 * cgroup cannot be removed before (EBUSY); `down` is safe to repeat.
 */
export async function downCluster(name: string): Promise<string | undefined> {
  let problem: string | undefined;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const r = await weftCli(['sim', 'down', '--name', name], 60_000);
    if (r.status === 0) return undefined;
    problem = `weft sim down --name ${name} failed (exit ${r.status}): ${r.stderr.trim().split('\n')[0] ?? ''}`;
    await sleep(1000 * attempt);
  }
  return problem;
}
