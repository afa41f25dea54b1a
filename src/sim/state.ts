// What `sim up` made, kept in /run/weft/sim/<name>/state.json so later commands (status,
// exec, down) and other tools can find it. /run is cleared on reboot, as are namespaces.

import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../core/errors.ts';
import { SimErrors } from './errors.ts';
import type { ClusterPlan } from './plan.ts';
import type { InstallRecord } from './install/install.ts';

export const SIM_RUN_DIR = process.env.WEFT_SIM_RUN_DIR ?? '/run/weft/sim';

export type MeshMode = 'off' | 'auto' | 'ebpf' | 'iptables';

export interface ClusterState {
  readonly version: 1;
  readonly plan: ClusterPlan;
  readonly cgroupMount: string;
  readonly createdAt: string;
  readonly mesh: MeshMode;
  /** PID of each pod's workload, by `namespace/name`. */
  readonly workloads: Readonly<Record<string, number>>;
  /** PIDs of mesh processes (agents, control plane), by role, e.g. `agent/node-1`. */
  readonly mesh_processes: Readonly<Record<string, number>>;
  /** Extra flags every agent of this cluster gets (`sim up --agent-args`). */
  readonly agentArgs: readonly string[];
  /** PIDs of add-ons (`sim up --prometheus`: prometheus, its port-forward), by name. */
  readonly addons?: Readonly<Record<string, number>>;
  /** The host's loopback URL of the cluster's Prometheus, when it runs one. */
  readonly prometheusUrl?: string;
  /** `sim up --install`: the mesh runs from installed objects (install/install.ts). */
  readonly install?: InstallRecord;
}

export function clusterDir(name: string): string {
  return join(SIM_RUN_DIR, name);
}

export function writeState(state: ClusterState): void {
  const dir = clusterDir(state.plan.name);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, 'state.json.tmp');
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(tmp, join(dir, 'state.json'));
}

export function readState(name: string): ClusterState {
  let text: string;
  try {
    text = readFileSync(join(clusterDir(name), 'state.json'), 'utf8');
  } catch (err: unknown) {
    const known = listClusters();
    throw new WeftError(SimErrors.NO_SUCH_CLUSTER, `no simulated cluster named ${JSON.stringify(name)}${known.length > 0 ? ` (running: ${known.join(', ')})` : ' (none is running)'}`, { cause: err });
  }
  return JSON.parse(text) as ClusterState;
}

export function listClusters(): string[] {
  try {
    return readdirSync(SIM_RUN_DIR).sort();
  } catch {
    return [];
  }
}

export function removeClusterDir(name: string): void {
  rmSync(clusterDir(name), { recursive: true, force: true });
}
