// Puts the mesh into a simulated cluster: the control plane in the underlay namespace
// (reachable from every node) and one agent per node, in the node's namespace and its own
// cgroup, each a real `weft` process. Used by `weft sim up --mesh ebpf|iptables`.

import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../core/errors.ts';
import { SimErrors } from './errors.ts';
import { makeCgroup } from './cgroups.ts';
import { alive, otelEnvironment, startDetached, stopPids, type Placement } from './processes.ts';
import { clusterDir, writeState, type ClusterState } from './state.ts';
import { CONTROL_IP } from './addresses.ts';
import { podCgroups, simUid } from './plan.ts';
import { PROMETHEUS_URL } from './prometheus.ts';
import { installCgroups, installComponents, installControlAddress, installPodPlace, launchInstalled, startInstalledMesh, stopInstalled } from './install/install.ts';

const CLI = join(import.meta.dirname, '..', 'cli', 'main.ts');
const MESH_READY_TIMEOUT_MS = 60_000;
export const CONTROL_PORT = 15010;
/** The control plane's dashboard, on loopback inside the underlay namespace (`weft sim dashboard` forwards to it). */
export const DASHBOARD_PORT = 15080;

function weftProcess(where: Placement, args: readonly string[], env: NodeJS.ProcessEnv, log: string): number {
  makeCgroup(where.cgroup);
  return startDetached(where, [process.execPath, CLI, ...args], {
    PATH: process.env.PATH, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE, ...otelEnvironment(process.env), ...env,
  }, log);
}


function meshDir(state: ClusterState): string {
  return join(clusterDir(state.plan.name), 'mesh');
}

/** The command line of a mesh component: `control` or `agent/<node>`. */
function componentProcess(state: ClusterState, component: string): { where: Placement; args: string[]; env: NodeJS.ProcessEnv; log: string; ready: string } {
  const { plan } = state;
  const dir = meshDir(state);
  const logs = join(clusterDir(plan.name), 'logs');
  const readyDir = join(dir, 'ready');
  if (component === 'control') {
    return {
      where: { cgroup: join(state.cgroupMount, plan.cgroup, 'control'), netns: plan.underlayNetns },
      args: ['control', '--listen', `${CONTROL_IP}:${CONTROL_PORT}`, '--manifests', join(clusterDir(plan.name), 'manifests'),
        '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json'), '--ready-file', join(readyDir, 'control'),
        '--dashboard', `127.0.0.1:${DASHBOARD_PORT}`, ...(state.addons?.prometheus === undefined ? [] : ['--prometheus', PROMETHEUS_URL])],
      env: {},
      log: join(logs, 'control.log'),
      ready: join(readyDir, 'control'),
    };
  }
  const n = plan.nodes.find((node) => `agent/${node.name}` === component);
  if (n === undefined) throw new WeftError(SimErrors.BAD_ARGUMENT, `no mesh component ${JSON.stringify(component)}: use control or agent/<node> (${plan.nodes.map((x) => `agent/${x.name}`).join(', ')})`);
  // The agent runs as a DaemonSet pod would: in a pod cgroup of its node, knowing its pod UID,
  // and finds the node's pods by their UIDs.
  const uid = simUid(plan.uidSeed ?? plan.name, `Pod/weft-system/weft-agent-${n.name}`);
  const { containerCgroup } = podCgroups(n, plan.cgroupDriver ?? 'systemd', 'Burstable', uid, 'agent');
  return {
    where: { cgroup: join(state.cgroupMount, containerCgroup), netns: n.netns },
    args: ['agent', '--node', n.name, '--mode', state.mesh, '--capture-address', n.bridgeIp, '--tunnel-address', n.ip,
      '--pin-name', `${plan.name}-${n.name}`,
      '--control', `${CONTROL_IP}:${CONTROL_PORT}`, '--token-file', join(dir, n.name, 'token'), '--ca-file', join(dir, 'ca', 'ca.crt'),
      '--state-dir', join(dir, n.name), '--ready-file', join(readyDir, `agent-${n.name}`), ...state.agentArgs],
    env: { POD_UID: uid, NODE_NAME: n.name },
    log: join(logs, `agent-${n.name}.log`),
    ready: join(readyDir, `agent-${n.name}`),
  };
}

function launch(state: ClusterState, component: string): { state: ClusterState; ready: string } {
  const p = componentProcess(state, component);
  rmSync(p.ready, { force: true });
  const pid = weftProcess(p.where, p.args, p.env, p.log);
  const next: ClusterState = { ...state, mesh_processes: { ...state.mesh_processes, [component]: pid } };
  writeState(next);
  return { state: next, ready: p.ready };
}

/** Where agents reach the control plane, and the CA file that verifies it (for tools and tests). */
export function controlEndpoint(state: ClusterState): { address: string; caFile: string } | undefined {
  if (state.mesh === 'off') return undefined;
  return { address: state.install === undefined ? `${CONTROL_IP}:${CONTROL_PORT}` : installControlAddress(state), caFile: join(meshDir(state), 'ca', 'ca.crt') };
}

/**
 * The network namespace whose loopback the dashboard listens on: the underlay's (the
 * simulator's own control plane), or the first control-plane replica's pod (an install:
 * the chart leaves --dashboard at its loopback default).
 */
export function dashboardNetns(state: ClusterState): string {
  if (state.install === undefined) return state.plan.underlayNetns;
  return installPodPlace(state, installComponents(state, 'control')[0] ?? '')?.netns ?? state.plan.underlayNetns;
}

/** Each mesh component's cgroup (absolute), by component name: where its process runs. */
export function meshCgroups(state: ClusterState): Record<string, string> {
  if (state.mesh === 'off') return {};
  if (state.install !== undefined) return installCgroups(state);
  return Object.fromEntries(['control', ...state.plan.nodes.map((n) => `agent/${n.name}`)].map((c) => [c, componentProcess(state, c).where.cgroup]));
}

/** Starts the control plane and every agent; resolves once all report ready. */
export async function startMesh(state: ClusterState): Promise<ClusterState> {
  if (state.mesh === 'off') return state;
  if (state.install !== undefined) return startInstalledMesh(state);
  const { plan } = state;
  const dir = meshDir(state);
  mkdirSync(join(dir, 'ready'), { recursive: true });
  const tokens: Record<string, string> = {};
  for (const n of plan.nodes) {
    const token = randomBytes(24).toString('base64url');
    tokens[token] = n.name;
    mkdirSync(join(dir, n.name), { recursive: true });
    writeFileSync(join(dir, n.name, 'token'), `${token}\n`, { mode: 0o600 });
  }
  writeFileSync(join(dir, 'tokens.json'), `${JSON.stringify(tokens, null, 2)}\n`, { mode: 0o600 });
  let next = state;
  const ready: string[] = [];
  for (const component of ['control', ...plan.nodes.map((n) => `agent/${n.name}`)]) {
    const launched = launch(next, component);
    next = launched.state;
    ready.push(launched.ready);
  }
  await waitFiles(ready, join(clusterDir(plan.name), 'logs'));
  return next;
}

export interface RestartOptions {
  /** SIGKILL instead of SIGTERM (a crash). */
  readonly kill?: boolean;
  /** Start the new process first and stop the old one once the new is ready (a rolling restart). */
  readonly overlap?: boolean;
}

/** Stops one mesh component (`control` or `agent/<node>`). */
export async function stopComponent(state: ClusterState, component: string, opts: RestartOptions = {}): Promise<ClusterState> {
  if (state.install !== undefined) {
    let next = state;
    for (const c of installComponents(state, component)) next = await stopInstalled(next, c, opts.kill === true);
    return next;
  }
  componentProcess(state, component); // validates the name
  const pid = state.mesh_processes[component];
  if (pid !== undefined) await signalAndWait(pid, opts.kill === true);
  const rest = Object.fromEntries(Object.entries(state.mesh_processes).filter(([k]) => k !== component));
  const next: ClusterState = { ...state, mesh_processes: rest };
  writeState(next);
  return next;
}

/** Starts one mesh component and waits until it is ready. */
export async function startComponent(state: ClusterState, component: string, replacing = false): Promise<ClusterState> {
  if (state.mesh === 'off') throw new WeftError(SimErrors.BAD_ARGUMENT, `cluster ${state.plan.name} runs without a mesh (--mesh off)`);
  const components = installComponents(state, component);
  for (const c of components) {
    const running = state.mesh_processes[c];
    if (running !== undefined && alive(running) && !replacing) {
      throw new WeftError(SimErrors.BAD_ARGUMENT, `${c} is already running (pid ${running}); use restart`);
    }
  }
  if (state.install !== undefined) {
    let next = state;
    for (const c of components) next = await launchInstalled(next, c);
    return next;
  }
  const launched = launch(state, component);
  await waitFiles([launched.ready], join(clusterDir(state.plan.name), 'logs'));
  return launched.state;
}

export async function restartComponent(state: ClusterState, component: string, opts: RestartOptions = {}): Promise<ClusterState> {
  if (opts.overlap !== true) return startComponent(await stopComponent(state, component, opts), component);
  let next = state;
  // One at a time, so a rolling restart of the control plane always leaves a replica serving.
  for (const c of installComponents(state, component)) {
    const old = next.mesh_processes[c];
    next = await startComponent(next, c, true);
    if (old !== undefined) await signalAndWait(old, opts.kill === true);
  }
  return next;
}

async function signalAndWait(pid: number, kill: boolean): Promise<void> {
  if (kill) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
  }
  await stopPids([pid], 30_000);
}

async function waitFiles(files: readonly string[], logs: string): Promise<void> {
  const deadline = Date.now() + MESH_READY_TIMEOUT_MS;
  for (;;) {
    const missing = files.filter((f) => !existsSync(f)).map((f) => basename(f));
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
