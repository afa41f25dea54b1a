// `weft sim` operations: up, down, status, exec. A cluster is a plan (plan.ts) made real:
// namespaces and veths (network.ts), cgroups (cgroups.ts), and one workload process per
// pod (processes.ts), recorded in a state file (state.ts) so any later command finds it.

import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../core/errors.ts';
import type { ManifestFile } from '../model/manifests.ts';
import { KERNEL_SPLICE_PIN_BASE, PIN_BASE, removePinDir } from '../redirect/index.ts';
import type { CgroupDriver } from '../core/kubelet-cgroups.ts';
import { SimErrors } from './errors.ts';
import { cgroup2Root, cgroupPids, listCgroups, makeCgroup, removeCgroupTree } from './cgroups.ts';
import { buildNetwork, deleteNetns, listNetns, netnsPids } from './network.ts';
import { clusterPrefix, nodeName, planCluster, type SimPod } from './plan.ts';
import { defaultManifests } from './defaults.ts';
import { renderScheduled } from './render.ts';
import { controlEndpoint, meshCgroups, startMesh, stopMesh } from './mesh.ts';
import { PROMETHEUS_URL, startPrometheus } from './prometheus.ts';
import { execInstalled, prepareInstall, removeMadeDirs, startApiServer, startInstalledMesh } from './install/install.ts';
import { runInside, startDetached, stopPids, type Placement } from './processes.ts';
import { clusterDir, listClusters, readState, removeClusterDir, writeState, type ClusterState, type MeshMode } from './state.ts';

export const ECHO_WORKLOAD = join(import.meta.dirname, 'workload', 'echo.ts');
const READY_TIMEOUT_MS = 120_000;

export interface UpOptions {
  readonly name: string;
  readonly nodes: number;
  readonly podsPerNode: number;
  /** User manifests; when absent, the sample set (defaults.ts) is generated. */
  readonly manifests: readonly ManifestFile[] | undefined;
  readonly mesh: MeshMode;
  /** How pod cgroups are named, as the kubelet's --cgroup-driver (default systemd). */
  readonly cgroupDriver?: CgroupDriver;
  /** Extra flags for every agent, e.g. ['--workers', '1']. */
  readonly agentArgs?: readonly string[];
  /** With an install: appended to the control-plane container's args. */
  readonly controlArgs?: readonly string[];
  /** Run Prometheus in the underlay (scraping the mesh), forwarded to this host port (0: any). */
  readonly prometheus?: { readonly port: number };
  /** Run the mesh from these rendered install objects (deploy/weft.yaml, helm template output). */
  readonly install?: {
    readonly source: string;
    readonly files: readonly ManifestFile[];
    /** Replace the agent's --mode with `mesh` (false: the install's own mode stands). Default true. */
    readonly overrideMode?: boolean;
  };
  /** Progress lines for a person; silent when undefined. */
  readonly log?: (line: string) => void;
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new WeftError(SimErrors.NOT_ROOT, 'weft sim needs root: it creates network namespaces, veths and cgroups (run it as root, e.g. with sudo)');
  }
}

/** Where a pod's processes run: its container's cgroup (inside the pod's, as the kubelet lays it out) and its network namespace. */
export function podPlacement(state: ClusterState, pod: SimPod): Placement {
  return { cgroup: join(state.cgroupMount, pod.containerCgroup), netns: pod.netns };
}

/** Where a node's own processes (its agent) run: the node's network namespace, in `<node>/<role>`'s cgroup. */
export function nodePlacement(state: ClusterState, nodeName: string, role: string): Placement {
  const node = state.plan.nodes.find((n) => n.name === nodeName);
  if (node === undefined) throw new WeftError(SimErrors.BAD_ARGUMENT, `no node ${JSON.stringify(nodeName)} in cluster ${state.plan.name}`);
  return { cgroup: join(state.cgroupMount, node.cgroup, role), netns: node.netns };
}

async function inUse(name: string, cgroupMount: string): Promise<string | undefined> {
  if (existsSync(join(clusterDir(name), 'state.json'))) return `cluster ${JSON.stringify(name)} is already up`;
  const ns = await listNetns(clusterPrefix(name));
  if (ns.length > 0) return `network namespaces of a cluster named ${JSON.stringify(name)} exist (${ns[0]}...)`;
  if (existsSync(join(cgroupMount, `weft-${name}`))) return `the cgroup weft-${name} exists`;
  return undefined;
}

export async function up(opts: UpOptions): Promise<ClusterState> {
  requireRoot();
  const log = opts.log ?? (() => undefined);
  const userManifests = opts.manifests ?? defaultManifests(opts.nodes, opts.podsPerNode);
  if (opts.install !== undefined && opts.mesh === 'off') throw new WeftError(SimErrors.BAD_ARGUMENT, '--install runs the mesh from the install; it does not go with --mesh off');
  const install = opts.install === undefined ? undefined : prepareInstall(opts.install.files, {
    agentMode: opts.install.overrideMode === false ? undefined : opts.mesh, agentArgs: opts.agentArgs ?? [], controlArgs: opts.controlArgs ?? [], ...(opts.prometheus === undefined ? {} : { controlAddonArgs: ['--prometheus', PROMETHEUS_URL] }),
  }, Array.from({ length: opts.nodes }, (_, i) => nodeName(i + 1)));
  const manifests = install === undefined ? userManifests : [...userManifests, install.planManifest];
  // The control-plane replicas are pods too, on top of the workloads --pods-per-node counts.
  const installPerNode = Math.ceil((install?.planPods ?? 0) / opts.nodes);
  const plan = planCluster({
    name: opts.name, nodes: opts.nodes, podsPerNode: opts.podsPerNode === 0 ? 0 : opts.podsPerNode + installPerNode, manifests,
    ...(opts.cgroupDriver === undefined ? {} : { cgroupDriver: opts.cgroupDriver }), ...(install === undefined ? {} : { uidSeed: install.uidSeed }),
  });
  const installed = new Set((install?.pods ?? []).map((p) => `${p.namespace}/${p.name}`));
  const appPods = plan.pods.filter((p) => !installed.has(`${p.namespace}/${p.name}`));
  const cgroupMount = cgroup2Root();
  const busy = await inUse(plan.name, cgroupMount);
  if (busy !== undefined) {
    throw new WeftError(SimErrors.NAME_IN_USE, `${busy}; pick another --name or run 'weft sim down --name ${plan.name}' first`);
  }

  const dir = clusterDir(plan.name);
  // A leftover directory from a failed run must not mix old files into this cluster's.
  rmSync(dir, { recursive: true, force: true });
  for (const sub of ['logs', 'ready', 'manifests']) mkdirSync(join(dir, sub), { recursive: true });
  for (const m of renderScheduled(plan, manifests)) writeFileSync(join(dir, 'manifests', m.path), m.text);
  let state: ClusterState = { version: 1, plan, cgroupMount, createdAt: new Date().toISOString(), mesh: opts.mesh, workloads: {}, mesh_processes: {}, agentArgs: opts.agentArgs ?? [] };
  writeState(state); // first, so `down` can clean up whatever a failure below leaves

  try {
    const started = Date.now();
    for (const n of plan.nodes) makeCgroup(join(cgroupMount, n.cgroup));
    for (const p of plan.pods) makeCgroup(join(cgroupMount, p.containerCgroup));
    await buildNetwork(plan);
    log(`network: ${plan.nodes.length} nodes, ${plan.pods.length} pods in ${Date.now() - started} ms`);

    const workloads: Record<string, number> = {};
    for (const p of appPods) {
      workloads[`${p.namespace}/${p.name}`] = startDetached(podPlacement(state, p), [process.execPath, ECHO_WORKLOAD], {
        PATH: process.env.PATH, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE, WEFT_POD: p.name, WEFT_NAMESPACE: p.namespace, WEFT_NODE: p.node, PORT: '8080',
        WEFT_READY_FILE: join(dir, 'ready', `${p.namespace}.${p.name}`),
      }, join(dir, 'logs', `pod-${p.namespace}.${p.name}.log`));
    }
    state = { ...state, workloads };
    writeState(state);
    await waitReady(appPods, dir);
    log(`workloads: ${appPods.length} ready after ${Date.now() - started} ms`);
    if (opts.prometheus !== undefined) {
      state = await startPrometheus(state, opts.prometheus.port);
      writeState(state);
      log(`prometheus: ${state.prometheusUrl ?? '?'} after ${Date.now() - started} ms`);
    }
    if (install !== undefined && opts.install !== undefined) {
      for (const line of install.set.patches) log(`install: ${line}`);
      state = await startApiServer(state, install.set, install.pods, { source: opts.install.source, workloads: install.set.workloads, pods: install.pods, patches: install.set.patches, madeDirs: [] });
      log(`install: API server up with ${install.set.objects.length} installed objects after ${Date.now() - started} ms`);
      state = await startInstalledMesh(state);
      log(`mesh (${opts.mesh}, from ${opts.install.source}): ${install.pods.filter((p) => p.component.startsWith('control/')).length} control-plane replica(s) and ${plan.nodes.length} agents ready after ${Date.now() - started} ms`);
    } else if (opts.mesh !== 'off') {
      state = await startMesh(state);
      log(`mesh (${opts.mesh}): control plane and ${plan.nodes.length} agents ready after ${Date.now() - started} ms`);
    }
    return state;
  } catch (err: unknown) {
    await down(plan.name).catch(() => undefined);
    throw err;
  }
}

async function waitReady(pods: readonly SimPod[], dir: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const want = new Set(pods.map((p) => `${p.namespace}.${p.name}`));
  for (;;) {
    for (const f of readdirSync(join(dir, 'ready'))) want.delete(f);
    if (want.size === 0) return;
    if (Date.now() > deadline) {
      const first = [...want][0] ?? '';
      throw new WeftError(SimErrors.WORKLOAD_NOT_READY, `${want.size} workload(s) did not start within ${READY_TIMEOUT_MS / 1000} s, e.g. ${first}; see ${join(dir, 'logs', `pod-${first}.log`)}`);
    }
    await sleep(25);
  }
}

/** Removes everything of cluster `name`: processes, namespaces, cgroups, state. Works on half-built or crashed clusters too. */
export async function down(name: string): Promise<void> {
  requireRoot();
  const prefix = clusterPrefix(name);
  const cgroupMount = cgroup2Root();
  let state: ClusterState | undefined;
  try {
    state = readState(name);
  } catch {
    state = undefined;
  }
  const cgroupDir = join(cgroupMount, `weft-${name}`);
  const namespaces = await listNetns(prefix);
  if (state !== undefined) await stopMesh(state);
  if (state !== undefined) removeMadeDirs(state);
  const pids = new Set<number>([
    ...Object.values(state?.workloads ?? {}),
    ...Object.values(state?.addons ?? {}),
    ...cgroupPids(cgroupDir),
  ]);
  for (const ns of namespaces) for (const pid of await netnsPids(ns)) pids.add(pid);
  await stopPids([...pids]);
  // Every step runs even if one fails, so one stuck piece does not leave the rest behind.
  const errors: unknown[] = [];
  const attempt = async (step: () => unknown): Promise<void> => {
    try {
      await step();
    } catch (err: unknown) {
      errors.push(err);
    }
  };
  await attempt(() => removeCgroupTree(cgroupDir));
  await attempt(() => deleteNetns(namespaces));
  await attempt(() => removeBpfPins(`weft-${name}-`));
  if (errors.length === 0) removeClusterDir(name);
  if (errors.length > 0) throw errors[0];
}

/**
 * The pins agents of this cluster left in bpffs (capture and kernel splice, each named
 * <base>/<cluster>-<node>), and each base once no other cluster has pins in it.
 */
function removeBpfPins(prefix: string): void {
  for (const base of [PIN_BASE, KERNEL_SPLICE_PIN_BASE]) {
    for (const entry of existsSync(base) ? readdirSync(base) : []) {
      if (entry.startsWith(prefix.slice('weft-'.length))) removePinDir(join(base, entry));
    }
  }
}

/** `down --all`: every cluster in the state directory, then anything else named weft-*. */
export async function downAll(): Promise<string[]> {
  requireRoot();
  const removed: string[] = [];
  for (const name of listClusters()) {
    await down(name);
    removed.push(name);
  }
  const cgroupMount = cgroup2Root();
  const namespaces = await listNetns('weft-');
  const strayCgroups = listCgroups(cgroupMount, 'weft-');
  const pids = new Set<number>(strayCgroups.flatMap(cgroupPids));
  for (const ns of namespaces) for (const pid of await netnsPids(ns)) pids.add(pid);
  await stopPids([...pids]);
  for (const cg of strayCgroups) await removeCgroupTree(cg);
  await deleteNetns(namespaces);
  for (const entry of existsSync('/sys/fs/bpf') ? readdirSync('/sys/fs/bpf') : []) {
    if (entry.startsWith('weft')) rmSync(join('/sys/fs/bpf', entry), { recursive: true, force: true });
  }
  if (namespaces.length > 0 || strayCgroups.length > 0) removed.push(`${namespaces.length} stray namespace(s), ${strayCgroups.length} stray cgroup(s)`);
  return removed;
}

export function findPod(state: ClusterState, ref: string): SimPod {
  const [ns, name] = ref.includes('/') ? ref.split('/', 2) : [undefined, ref];
  const matches = state.plan.pods.filter((p) => p.name === name && (ns === undefined || p.namespace === ns));
  if (matches.length === 1 && matches[0] !== undefined) return matches[0];
  if (matches.length > 1) {
    throw new WeftError(SimErrors.NO_SUCH_POD, `pod name ${JSON.stringify(ref)} is ambiguous: ${matches.map((p) => `${p.namespace}/${p.name}`).join(', ')}; use namespace/name`);
  }
  const some = state.plan.pods.slice(0, 5).map((p) => `${p.namespace}/${p.name}`).join(', ');
  throw new WeftError(SimErrors.NO_SUCH_POD, `no pod ${JSON.stringify(ref)} in cluster ${state.plan.name} (pods: ${some}${state.plan.pods.length > 5 ? ', ...' : ''}; see 'weft sim status --name ${state.plan.name}')`);
}

/** Runs a command inside a pod, or (an install's `agent/NODE`, `control/I`) inside that container as `kubectl exec` would; resolves with its exit code. */
export async function exec(name: string, podRef: string, command: readonly string[]): Promise<number> {
  requireRoot();
  const state = readState(name);
  if (command.length === 0) throw new WeftError(SimErrors.BAD_ARGUMENT, 'no command given: weft sim exec --name NAME POD -- CMD...');
  if (state.install?.pods.some((p) => p.component === podRef) === true) return execInstalled(state, podRef, command);
  const pod = findPod(state, podRef);
  return runInside(podPlacement(state, pod), command).done;
}

/** The stable JSON form of `weft sim status --json` (other tools read it). */
export function statusJson(state: ClusterState): object {
  const { plan } = state;
  return {
    name: plan.name,
    mesh: state.mesh,
    cgroupDriver: plan.cgroupDriver,
    createdAt: state.createdAt,
    underlay: { netns: plan.underlayNetns },
    nodes: plan.nodes.map((n) => ({ name: n.name, ip: n.ip, netns: n.netns, bridgeIp: n.bridgeIp, podCIDR: n.podCidr, cgroup: join(state.cgroupMount, n.cgroup) })),
    pods: plan.pods.map((p) => ({
      name: p.name, namespace: p.namespace, node: p.node, ip: p.ip, netns: p.netns, serviceAccount: p.serviceAccount,
      labels: p.labels, enrolled: p.enrolled, uid: p.uid, qos: p.qos, cgroup: join(state.cgroupMount, p.cgroup),
      containerCgroup: join(state.cgroupMount, p.containerCgroup), pid: state.workloads[`${p.namespace}/${p.name}`],
    })),
    services: plan.services.map((s) => ({ name: s.name, namespace: s.namespace, vip: s.vip, ports: s.ports, selector: s.selector })),
    meshProcesses: state.mesh_processes,
    meshCgroups: meshCgroups(state),
    control: controlEndpoint(state),
    ...(state.prometheusUrl === undefined ? {} : { prometheusUrl: state.prometheusUrl }),
  };
}
