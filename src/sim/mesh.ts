// Puts the mesh into a simulated cluster: the control plane in the underlay namespace
// (reachable from every node) and one agent per node, in the node's namespace and its own
// cgroup, each a real `weft` process. Used by `weft sim up --mesh ebpf|iptables`.

import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../core/errors.ts';
import { SimErrors } from './errors.ts';
import { makeCgroup } from './cgroups.ts';
import { startDetached, stopPids, type Placement } from './processes.ts';
import { clusterDir, writeState, type ClusterState } from './state.ts';
import { CONTROL_IP } from './addresses.ts';

const CLI = join(import.meta.dirname, '..', 'cli', 'main.ts');
const MESH_READY_TIMEOUT_MS = 60_000;
export const CONTROL_PORT = 15010;

export interface MeshLayout {
  readonly controlAddress: string;
  readonly dir: string;
}

function weftProcess(where: Placement, args: readonly string[], log: string): number {
  makeCgroup(where.cgroup);
  return startDetached(where, [process.execPath, CLI, ...args], {
    PATH: process.env.PATH, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE,
  }, log);
}

/** Starts the control plane and every agent; resolves once all report ready. */
export async function startMesh(state: ClusterState): Promise<ClusterState> {
  if (state.mesh === 'off') return state;
  const { plan } = state;
  const dir = join(clusterDir(plan.name), 'mesh');
  const readyDir = join(dir, 'ready');
  mkdirSync(readyDir, { recursive: true });
  const tokens: Record<string, string> = {};
  for (const n of plan.nodes) {
    const token = randomBytes(24).toString('base64url');
    tokens[token] = n.name;
    mkdirSync(join(dir, n.name), { recursive: true });
    writeFileSync(join(dir, n.name, 'token'), `${token}\n`, { mode: 0o600 });
  }
  writeFileSync(join(dir, 'tokens.json'), `${JSON.stringify(tokens, null, 2)}\n`, { mode: 0o600 });
  const logs = join(clusterDir(plan.name), 'logs');
  const processes: Record<string, number> = { ...state.mesh_processes };

  processes.control = weftProcess(
    { cgroup: join(state.cgroupMount, plan.cgroup, 'control'), netns: plan.underlayNetns },
    ['control', '--listen', `${CONTROL_IP}:${CONTROL_PORT}`, '--manifests', join(clusterDir(plan.name), 'manifests'),
      '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json'), '--ready-file', join(readyDir, 'control')],
    join(logs, 'control.log'));
  let next: ClusterState = { ...state, mesh_processes: processes };
  writeState(next);

  for (const n of plan.nodes) {
    const cgroupRoot = join(state.cgroupMount, n.cgroup);
    processes[`agent/${n.name}`] = weftProcess(
      { cgroup: join(cgroupRoot, 'agent'), netns: n.netns },
      ['agent', '--node', n.name, '--mode', state.mesh, '--capture-address', n.bridgeIp, '--tunnel-address', n.ip,
        '--pin-name', `${plan.name}-${n.name}`, '--pod-cgroup', join(cgroupRoot, 'pod-{namespace}.{name}'),
        '--control', `${CONTROL_IP}:${CONTROL_PORT}`, '--token-file', join(dir, n.name, 'token'), '--ca-file', join(dir, 'ca', 'ca.crt'),
        '--state-dir', join(dir, n.name), '--ready-file', join(readyDir, `agent-${n.name}`)],
      join(logs, `agent-${n.name}.log`));
    next = { ...next, mesh_processes: { ...processes } };
    writeState(next);
  }
  await waitFiles(readyDir, ['control', ...plan.nodes.map((n) => `agent-${n.name}`)], logs);
  return next;
}

async function waitFiles(dir: string, names: readonly string[], logs: string): Promise<void> {
  const deadline = Date.now() + MESH_READY_TIMEOUT_MS;
  for (;;) {
    const have = new Set(existsSync(dir) ? readdirSync(dir) : []);
    const missing = names.filter((n) => !have.has(n));
    if (missing.length === 0) return;
    if (Date.now() > deadline) {
      throw new WeftError(SimErrors.WORKLOAD_NOT_READY, `the mesh did not become ready within ${MESH_READY_TIMEOUT_MS / 1000} s: ${missing.join(', ')} not ready; see ${logs}/`);
    }
    await sleep(50);
  }
}

/** Stops the mesh processes (agents first, so they can detach capture, then the control plane). */
export async function stopMesh(state: ClusterState): Promise<void> {
  const agents = Object.entries(state.mesh_processes).filter(([k]) => k.startsWith('agent/')).map(([, pid]) => pid);
  await stopPids(agents, 10_000);
  const others = Object.entries(state.mesh_processes).filter(([k]) => !k.startsWith('agent/')).map(([, pid]) => pid);
  await stopPids(others);
}
