// `weft sim up --install PATH`: the mesh of a simulated cluster run from the rendered chart
// (deploy/weft.yaml, or `helm template` output) as a cluster would run it. An API server
// process in the underlay holds every installed object plus the cluster's own (Nodes, the
// user's objects, the pods); the control-plane Deployment's replicas run as pods with their
// own addresses on the nodes, and the agent DaemonSet as one hostNetwork pod per node, each
// with exactly the command, args, env, volumes, probe and securityContext its pod template
// gives (kubelet.ts). Agents find the control plane by the chart's Service name.

import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseAllDocuments, stringify } from 'yaml';
import { run } from '../../core/exec.ts';
import { WeftError } from '../../core/errors.ts';
import { qosClass, type ContainerResources } from '../../core/kubelet-cgroups.ts';
import type { ManifestFile } from '../../model/manifests.ts';
import { SimErrors } from '../errors.ts';
import { makeCgroup } from '../cgroups.ts';
import { podCgroups, simUid, type ClusterPlan, type SimNode } from '../plan.ts';
import { alive, otelEnvironment, runInside, startDetached, stopPids } from '../processes.ts';
import { clusterDir, listClusters, readState, writeState, type ClusterState } from '../state.ts';
import { KUBE_API_IP } from '../addresses.ts';
import { SimApiClient } from './api-client.ts';
import { hostsFile, prepareVolumes, securityPrefix, startContainer, syncVolumes, waitReadiness, type InstalledPod, type KubeletPaths } from './kubelet.ts';
import { TOKEN_CLOCK_PATH } from '../kube-api/tokens.ts';
import { installSet, type Body, type InstallOverrides, type InstallSet, type InstallWorkload } from './objects.ts';
import { podRun, type PodRun } from './pod-spec.ts';

export const KUBE_API_PORT = 6443;
const READY_TIMEOUT_MS = 90_000;

/** One pod the install runs, by mesh component name (`control/0`, `agent/node-1`). */
export interface InstalledPodRecord {
  readonly component: string;
  readonly workload: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly node: string;
}

/** What `sim up --install` recorded in the cluster's state. */
export interface InstallRecord {
  /** The path the objects came from. */
  readonly source: string;
  readonly workloads: readonly InstallWorkload[];
  readonly pods: readonly InstalledPodRecord[];
  readonly patches: readonly string[];
  /** Mount points `sim up` had to create on the machine (empty directories), removed by the last `sim down`. */
  readonly madeDirs: readonly string[];
}

const isRecord = (v: unknown): v is Body => typeof v === 'object' && v !== null && !Array.isArray(v);

function templateSpec(w: InstallWorkload): Body {
  return isRecord(w.template.spec) ? w.template.spec : {};
}

function templateLabels(w: InstallWorkload): Record<string, string> {
  const md = isRecord(w.template.metadata) ? w.template.metadata : {};
  return isRecord(md.labels) ? md.labels as Record<string, string> : {};
}

/** The pods of the install (replicas on nodes round-robin, one agent per node), with UIDs from the cluster's seed. */
export function installPods(set: InstallSet, nodeNames: readonly string[], uidSeed: string): InstalledPodRecord[] {
  const out: InstalledPodRecord[] = [];
  for (const w of set.workloads) {
    if (w.kind === 'Deployment') {
      for (let i = 0; i < (w.replicas ?? 1); i++) {
        const name = `${w.name}-${i}`;
        out.push({ component: `${w.role}/${i}`, workload: `${w.kind}/${w.name}`, namespace: w.namespace, name, uid: simUid(uidSeed, `Pod/${w.namespace}/${name}`), node: nodeNames[i % nodeNames.length] ?? '' });
      }
    } else {
      for (const node of nodeNames) {
        const name = `${w.name}-${node}`;
        out.push({ component: `${w.role}/${node}`, workload: `${w.kind}/${w.name}`, namespace: w.namespace, name, uid: simUid(uidSeed, `Pod/${w.namespace}/${name}`), node });
      }
    }
  }
  return out;
}

/** The Pod object of an installed pod, as the API would hold it once scheduled and running. */
function podObject(w: InstallWorkload, p: InstalledPodRecord, podIP: string, hostIP: string): Body {
  const spec = templateSpec(w);
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: p.name, namespace: p.namespace, uid: p.uid, labels: templateLabels(w), ownerReferences: [{ apiVersion: 'apps/v1', kind: w.kind, name: w.name, controller: true }] },
    spec: { ...spec, nodeName: p.node },
    status: { phase: 'Running', hostIP, podIP, podIPs: [{ ip: podIP }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

/**
 * The extra manifests the cluster plan needs for the install: the pods that are not
 * hostNetwork get their netns, address and cgroup from the plan like any pod (their
 * namespace and service accounts come along so the plan's checks hold).
 */
export function installPlanManifests(set: InstallSet, pods: readonly InstalledPodRecord[]): ManifestFile {
  const docs: Body[] = set.objects.filter((o) => o.kind === 'Namespace' || o.kind === 'ServiceAccount');
  for (const p of pods) {
    const w = set.workloads.find((x) => `${x.kind}/${x.name}` === p.workload);
    if (w === undefined || templateSpec(w).hostNetwork === true) continue;
    docs.push({ apiVersion: 'v1', kind: 'Pod', metadata: { name: p.name, namespace: p.namespace, uid: p.uid, labels: templateLabels(w) }, spec: { ...templateSpec(w), nodeName: p.node } });
  }
  return { path: 'install-pods.yaml', text: docs.map((d) => stringify(d)).join('---\n') };
}

/** Reads the install and what the plan needs from it. */
export function prepareInstall(files: readonly ManifestFile[], overrides: InstallOverrides, nodeNames: readonly string[]): {
  set: InstallSet; pods: InstalledPodRecord[]; planManifest: ManifestFile; planPods: number; uidSeed: string;
} {
  const set = installSet(files, overrides);
  const uidSeed = randomUUID();
  const pods = installPods(set, nodeNames, uidSeed);
  const planPods = pods.filter((p) => set.workloads.some((w) => `${w.kind}/${w.name}` === p.workload && templateSpec(w).hostNetwork !== true)).length;
  return { set, pods, planManifest: installPlanManifests(set, pods), planPods, uidSeed };
}

// ---- running it -------------------------------------------------------------------------

function installDir(state: ClusterState): string {
  return join(clusterDir(state.plan.name), 'install');
}

function api(state: ClusterState): SimApiClient {
  return new SimApiClient(join(installDir(state), 'api.sock'));
}

function nodeOf(plan: ClusterPlan, name: string): SimNode {
  const n = plan.nodes.find((x) => x.name === name);
  if (n === undefined) throw new WeftError(SimErrors.BAD_ARGUMENT, `no node ${name} in cluster ${plan.name}`);
  return n;
}

function workloadOf(record: InstallRecord, p: InstalledPodRecord): InstallWorkload {
  const w = record.workloads.find((x) => `${x.kind}/${x.name}` === p.workload);
  if (w === undefined) throw new WeftError(SimErrors.BAD_ARGUMENT, `no workload ${p.workload} in the install`);
  return w;
}

/** Where an installed pod lives: its own netns and address from the plan, or (hostNetwork) its node's, with kubelet's cgroup. */
function placePod(state: ClusterState, w: InstallWorkload, p: InstalledPodRecord): InstalledPod {
  const node = nodeOf(state.plan, p.node);
  if (templateSpec(w).hostNetwork === true) {
    const containers = Array.isArray(templateSpec(w).containers) ? templateSpec(w).containers as Body[] : [];
    const resources = containers.map((c) => (c.resources ?? {}) as ContainerResources);
    const { containerCgroup } = podCgroups(node, state.plan.cgroupDriver, qosClass(resources), p.uid, typeof containers[0]?.name === 'string' ? containers[0].name : 'main');
    return { namespace: p.namespace, name: p.name, uid: p.uid, node: p.node, podIP: node.ip, hostIP: node.ip, placement: { cgroup: join(state.cgroupMount, containerCgroup), netns: node.netns } };
  }
  const planned = state.plan.pods.find((x) => x.namespace === p.namespace && x.name === p.name);
  if (planned === undefined) throw new WeftError(SimErrors.BAD_ARGUMENT, `pod ${p.namespace}/${p.name} is not in the cluster plan`);
  return { namespace: p.namespace, name: p.name, uid: p.uid, node: p.node, podIP: planned.ip, hostIP: node.ip, placement: { cgroup: join(state.cgroupMount, planned.containerCgroup), netns: planned.netns } };
}

/** Every Service's DNS answer: its cluster IP, or (headless) the addresses of the pods it selects. */
function serviceAddresses(state: ClusterState, record: InstallRecord, objects: readonly Body[]): { name: string; namespace: string; ips: string[] }[] {
  const out: { name: string; namespace: string; ips: string[] }[] = [{ name: 'kubernetes', namespace: 'default', ips: [KUBE_API_IP] }];
  for (const svc of objects.filter((o) => o.kind === 'Service')) {
    const md = (svc.metadata ?? {}) as Body;
    const spec = (svc.spec ?? {}) as Body;
    const namespace = typeof md.namespace === 'string' ? md.namespace : 'default';
    if (typeof spec.clusterIP === 'string' && spec.clusterIP !== 'None') {
      out.push({ name: String(md.name), namespace, ips: [spec.clusterIP] });
      continue;
    }
    const selector = (spec.selector ?? {}) as Record<string, string>;
    const ips = record.pods.filter((p) => p.namespace === namespace).flatMap((p) => {
      const labels = templateLabels(workloadOf(record, p));
      if (Object.entries(selector).some(([k, v]) => labels[k] !== v)) return [];
      return [placePod(state, workloadOf(record, p), p).podIP];
    });
    out.push({ name: String(md.name), namespace, ips });
  }
  return out;
}

function documents(files: readonly ManifestFile[]): Body[] {
  return files.flatMap((f) => parseAllDocuments(f.text).map((d) => d.toJS() as unknown)).filter(isRecord);
}

async function makeApiCertificate(dir: string): Promise<{ keyFile: string; certFile: string }> {
  const keyFile = join(dir, 'apiserver.key');
  const certFile = join(dir, 'apiserver.crt');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=kube-apiserver',
    '-addext', `subjectAltName=IP:${KUBE_API_IP},DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local`, '-keyout', keyFile, '-out', certFile], { code: SimErrors.COMMAND_FAILED });
  return { keyFile, certFile };
}

async function waitFile(file: string, what: string, logFile: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new WeftError(SimErrors.WORKLOAD_NOT_READY, `${what} did not start within ${READY_TIMEOUT_MS / 1000} s; see ${logFile}`);
    await sleep(50);
  }
}

/** Starts the API server, holding the install's objects and the cluster's own. */
export async function startApiServer(state: ClusterState, set: InstallSet, pods: readonly InstalledPodRecord[], record: InstallRecord): Promise<ClusterState> {
  const dir = installDir(state);
  mkdirSync(dir, { recursive: true });
  const { plan } = state;
  // The underlay reaches the pods (control-plane replicas call the API from their own addresses).
  await run('ip', ['-n', plan.underlayNetns, '-batch', '-'], {
    input: `${[`addr add ${KUBE_API_IP}/24 dev ul`, ...plan.nodes.map((n) => `route add ${n.podCidr} via ${n.ip}`)].join('\n')}\n`, code: SimErrors.COMMAND_FAILED,
  });
  const tls = await makeApiCertificate(dir);
  const installed = new Set(pods.map((p) => `${p.namespace}/${p.name}`));
  const cluster = documents(readManifestDir(join(clusterDir(plan.name), 'manifests')))
    .filter((o) => !(o.kind === 'Pod' && installed.has(podKey(o))));
  const podObjects = pods.map((p) => {
    const w = set.workloads.find((x) => `${x.kind}/${x.name}` === p.workload);
    if (w === undefined) throw new Error(`no workload ${p.workload}`);
    const placed = placePod({ ...state, install: record }, w, p);
    return podObject(w, p, placed.podIP, placed.hostIP);
  });
  const objectsFile = join(dir, 'objects.json');
  writeFileSync(objectsFile, JSON.stringify([...set.objects, ...cluster, ...podObjects]));
  const config = { listen: { host: KUBE_API_IP, port: KUBE_API_PORT }, tls, socketPath: join(dir, 'api.sock'), objectsFile, readyFile: join(dir, 'api.ready') };
  writeFileSync(join(dir, 'kube-api.json'), JSON.stringify(config));
  const cgroup = join(state.cgroupMount, plan.cgroup, 'kube-api');
  makeCgroup(cgroup);
  const log = join(clusterDir(plan.name), 'logs', 'kube-api.log');
  const pid = startDetached({ cgroup, netns: plan.underlayNetns }, [process.execPath, join(import.meta.dirname, '..', 'kube-api', 'main.ts'), join(dir, 'kube-api.json')], { PATH: process.env.PATH, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE }, log);
  const next: ClusterState = { ...state, install: record, addons: { ...state.addons, 'kube-api': pid } };
  writeState(next);
  await waitFile(config.readyFile, 'the simulated API server', log);
  return next;
}

function podKey(o: Body): string {
  const md = isRecord(o.metadata) ? o.metadata : {};
  return `${typeof md.namespace === 'string' ? md.namespace : 'default'}/${String(md.name)}`;
}

function readManifestDir(dir: string): ManifestFile[] {
  if (!existsSync(dir)) return [];
  // renderScheduled's files, as `up` wrote them (Nodes first).
  return readdirSync(dir).sort().map((f) => ({ path: f, text: readFileSync(join(dir, f), 'utf8') }));
}

/** The mesh components `component` names: `control` is every control-plane replica. */
export function installComponents(state: ClusterState, component: string): string[] {
  const record = state.install;
  if (record === undefined) return [component];
  const all = record.pods.map((p) => p.component);
  if (all.includes(component)) return [component];
  const group = all.filter((c) => c.startsWith(`${component}/`));
  if (group.length > 0) return group;
  throw new WeftError(SimErrors.BAD_ARGUMENT, `no mesh component ${JSON.stringify(component)}: use ${['control', ...all].join(', ')}`);
}

/** What the kubelet knows of one installed pod: where it runs, its pod spec as run, its directories. */
function kubeletView(state: ClusterState, component: string): { record: InstallRecord; p: InstalledPodRecord; pod: InstalledPod; spec: PodRun; paths: KubeletPaths; objects: Body[] } {
  const record = state.install;
  const p = record?.pods.find((x) => x.component === component);
  if (record === undefined || p === undefined) throw new WeftError(SimErrors.BAD_ARGUMENT, `no installed component ${JSON.stringify(component)}${record === undefined ? '' : `: use ${record.pods.map((x) => x.component).join(', ')}`}`);
  const w = workloadOf(record, p);
  const pod = placePod(state, w, p);
  const dir = installDir(state);
  const objects = JSON.parse(readFileSync(join(dir, 'objects.json'), 'utf8')) as Body[];
  const serviceAccounts = new Map(objects.filter((o) => o.kind === 'ServiceAccount').map((o) => [`${String((o.metadata as Body).namespace)}/${String((o.metadata as Body).name)}`, o]));
  const saName = templateSpec(w).serviceAccountName;
  const sa = serviceAccounts.get(`${p.namespace}/${typeof saName === 'string' ? saName : 'default'}`);
  const lookup = (): string | undefined => undefined;
  const spec: PodRun = podRun(w.template, {
    namespace: p.namespace, name: p.name, uid: p.uid, nodeName: p.node, podIP: pod.podIP, hostIP: pod.hostIP,
    serviceAccountAutomount: typeof sa?.automountServiceAccountToken === 'boolean' ? sa.automountServiceAccountToken : undefined,
    clusterEnv: { KUBERNETES_SERVICE_HOST: KUBE_API_IP, KUBERNETES_SERVICE_PORT: String(KUBE_API_PORT), KUBERNETES_SERVICE_PORT_HTTPS: String(KUBE_API_PORT) },
  }, lookup, `${p.workload} (pod ${p.name})`);
  const paths: KubeletPaths = {
    podDir: join(dir, 'pods', `${p.namespace}.${p.name}`), nodeRoot: join(dir, 'nodes', p.node),
    nodeBpffs: join('/sys/fs/bpf/weft', `${state.plan.name}-${p.node}-fs`), apiCaFile: join(dir, 'apiserver.crt'),
  };
  return { record, p, pod, spec, paths, objects };
}

/** Starts one installed pod (volumes, mounts, container); resolves once its readiness probe passes. */
export async function launchInstalled(state: ClusterState, component: string): Promise<ClusterState> {
  const { record, p, pod, spec, paths, objects } = kubeletView(state, component);
  mkdirSync(paths.podDir, { recursive: true });
  const mounts = await prepareVolumes(api(state), pod, spec, paths, hostsFile({ name: p.name, podIP: pod.podIP }, serviceAddresses(state, record, objects)));
  const log = join(clusterDir(state.plan.name), 'logs', `${component.replace('/', '-')}.log`);
  const { pid, madeDirs } = startContainer(pod, spec, mounts, {
    PATH: process.env.PATH, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE,
    ...otelEnvironment(process.env),
  }, log);
  const next: ClusterState = {
    ...state, mesh_processes: { ...state.mesh_processes, [component]: pid },
    install: { ...record, madeDirs: [...new Set([...record.madeDirs, ...madeDirs])] },
  };
  writeState(next);
  let waiting = true;
  try {
    await Promise.race([
      waitReadiness(pod, spec, READY_TIMEOUT_MS, log, pid),
      (async () => {
        while (waiting && alive(pid)) await sleep(200);
        // The log's end goes into the message: `sim up` removes the half-built cluster, log and all.
        if (waiting) throw new WeftError(SimErrors.WORKLOAD_NOT_READY, `${component} (pod ${p.namespace}/${p.name}) exited before it was ready; the end of its log:\n${logTail(log, 20)}`);
      })(),
    ]);
  } finally {
    waiting = false;
  }
  return next;
}

/**
 * `kubectl exec` into an installed component's container: its cgroup, mount and network
 * namespaces, its user, capabilities and env. Resolves with the command's exit code.
 */
export async function execInstalled(state: ClusterState, component: string, command: readonly string[]): Promise<number> {
  const pid = state.mesh_processes[component];
  if (pid === undefined || !alive(pid)) throw new WeftError(SimErrors.BAD_ARGUMENT, `${component} is not running (start it with 'weft sim mesh --name ${state.plan.name} start ${component}')`);
  const { pod, spec } = kubeletView(state, component);
  const env = Object.entries({ PATH: process.env.PATH ?? '/usr/bin:/bin', ...spec.env }).map(([k, v]) => `${k}=${v}`);
  return runInside({ cgroup: pod.placement.cgroup, netns: '' }, ['nsenter', '-t', String(pid), '-m', '-n', '--', ...securityPrefix(spec), 'env', '-i', ...env, ...command]).done;
}

/** The kubelet's volume sync for running installed pods (`component` as `sim mesh` names them): new projected tokens, current ConfigMaps and Secrets. */
export async function syncInstalledVolumes(state: ClusterState, component: string): Promise<string[]> {
  const out: string[] = [];
  for (const c of installComponents(state, component)) {
    const { pod, spec, paths } = kubeletView(state, c);
    for (const v of await syncVolumes(api(state), pod, spec, paths)) out.push(`${c}: ${v}`);
  }
  return out;
}

/** Moves the API server's token time on by `seconds`: tokens issued before expire as they would after that long. */
export async function advanceTokenClock(state: ClusterState, seconds: number): Promise<void> {
  if (state.install === undefined) throw new WeftError(SimErrors.BAD_ARGUMENT, `cluster ${state.plan.name} has no API server (it was not brought up with --install)`);
  const r = await api(state).request('POST', TOKEN_CLOCK_PATH, { seconds });
  if (r.status !== 200) throw new WeftError(SimErrors.COMMAND_FAILED, `the simulated API server refused to move its token clock: HTTP ${r.status}: ${String(r.body.message)}`);
}

function logTail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).map((l) => `  ${l.slice(0, 400)}`).join('\n');
  } catch {
    return `  (no log at ${file})`;
  }
}

/** Starts the control-plane replicas, waits for the trust bundle they publish, then the agents. */
export async function startInstalledMesh(state: ClusterState): Promise<ClusterState> {
  const record = state.install;
  if (record === undefined) return state;
  let next = state;
  const controls = record.pods.filter((p) => p.component.startsWith('control/'));
  for (const p of controls) next = await launchInstalled(next, p.component);
  // What tools and tests verify the control plane with: the bundle the replicas published.
  const cm = await api(next).get('/api/v1/namespaces/weft-system/configmaps/weft-ca-root-cert');
  const pem = (cm?.data as Record<string, string> | undefined)?.['root-cert.pem'];
  if (pem !== undefined) {
    mkdirSync(join(clusterDir(state.plan.name), 'mesh', 'ca'), { recursive: true });
    writeFileSync(join(clusterDir(state.plan.name), 'mesh', 'ca', 'ca.crt'), pem);
  }
  for (const p of record.pods.filter((x) => !x.component.startsWith('control/'))) next = await launchInstalled(next, p.component);
  return next;
}

/** Stops one installed pod's container by PID. */
export async function stopInstalled(state: ClusterState, component: string, kill: boolean): Promise<ClusterState> {
  const pid = state.mesh_processes[component];
  if (pid !== undefined) {
    if (kill) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await stopPids([pid], 30_000);
  }
  const next: ClusterState = { ...state, mesh_processes: Object.fromEntries(Object.entries(state.mesh_processes).filter(([k]) => k !== component)) };
  writeState(next);
  return next;
}

/** `sim down`'s part: the mount points made on the machine go once no other cluster may be using them. */
export function removeMadeDirs(state: ClusterState): void {
  // Another installed cluster's pods may have their volumes mounted on these (removing a
  // mount point detaches it in every mount namespace).
  const others = listClusters().filter((c) => c !== state.plan.name).filter((c) => {
    try {
      return readState(c).install !== undefined;
    } catch {
      return false;
    }
  });
  if (others.length > 0) return;
  const dirs = [...(state.install?.madeDirs ?? [])].sort((a, b) => b.length - a.length);
  for (const d of dirs) {
    // Deepest first; a directory someone filled meanwhile stays.
    try {
      rmEmptyTree(d);
    } catch {
      // not empty, or gone: leave it
    }
  }
}

function rmEmptyTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (!e.isDirectory()) return;
    rmEmptyTree(join(dir, e.name));
  }
  rmdirSync(dir);
}

/** Where agents reach the control plane: the first replica's address (tools and tests). */
export function installControlAddress(state: ClusterState): string {
  const record = state.install;
  const p = record?.pods.find((x) => x.component.startsWith('control/'));
  if (record === undefined || p === undefined) return '';
  return `${placePod(state, workloadOf(record, p), p).podIP}:15010`;
}

/** Each installed pod's container cgroup (absolute), by component. */
export function installCgroups(state: ClusterState): Record<string, string> {
  const record = state.install;
  if (record === undefined) return {};
  return Object.fromEntries(record.pods.map((p) => [p.component, placePod(state, workloadOf(record, p), p).placement.cgroup]));
}

/** Where an installed component runs (e.g. a control-plane replica): its pod address and network namespace. */
export function installPodPlace(state: ClusterState, component: string): { podIP: string; netns: string } | undefined {
  const record = state.install;
  const p = record?.pods.find((x) => x.component === component);
  if (record === undefined || p === undefined) return undefined;
  const placed = placePod(state, workloadOf(record, p), p);
  return { podIP: placed.podIP, netns: placed.placement.netns };
}
