// Pure planning: from the requested shape and the parsed manifests to every name and
// address the simulator will create. No I/O here, so it is tested with tables.

import { createHash, randomUUID } from 'node:crypto';
import { WeftError } from '../core/errors.ts';
import { containerCgroupName, podCgroupRelative, qosClass, type CgroupDriver, type ContainerResources, type QosClass } from '../core/kubelet-cgroups.ts';
import { formatProblem, parseManifests, splitManifests, type ManifestFile, type ManifestProblem } from '../model/manifests.ts';
import { MESH_ENABLED, MESH_LABEL, type Labels } from '../model/types.ts';
import { SimErrors } from './errors.ts';
import {
  MAX_NODES, MAX_PODS_PER_NODE, SERVICE_CIDR, inCidr, nodeBridgeIp, nodeUnderlayIp, podCidr, podIp,
} from './addresses.ts';

export interface SimNode {
  readonly name: string;
  readonly index: number;
  /** Underlay address: how other nodes reach this node's agent. */
  readonly ip: string;
  /** The bridge address: the pods' gateway, and the node as its pods see it. */
  readonly bridgeIp: string;
  readonly podCidr: string;
  readonly netns: string;
  /** Cgroup directory of the node, relative to the cgroup2 mount. */
  readonly cgroup: string;
}

export interface SimPod {
  readonly name: string;
  readonly namespace: string;
  readonly node: string;
  readonly ip: string;
  readonly netns: string;
  readonly serviceAccount: string;
  readonly labels: Labels;
  readonly enrolled: boolean;
  /** metadata.uid (the manifest's, else made up as the API server would). */
  readonly uid: string;
  /** The QoS class the kubelet derives from the containers' requests and limits. */
  readonly qos: QosClass;
  /** Cgroup directory of the pod, relative to the cgroup2 mount, as the kubelet names it (by UID and QoS class). */
  readonly cgroup: string;
  /** The cgroup its (one) container's processes run in, below `cgroup`. */
  readonly containerCgroup: string;
  /** The node-side end of the pod's veth. */
  readonly hostVeth: string;
}

export interface SimService {
  readonly name: string;
  readonly namespace: string;
  readonly vip: string;
  readonly ports: readonly { readonly port: number; readonly targetPort: number | string }[];
  readonly selector: Labels;
}

export interface ClusterPlan {
  readonly name: string;
  readonly underlayNetns: string;
  /** Cgroup directory of the whole cluster, relative to the cgroup2 mount. */
  readonly cgroup: string;
  /** How pod cgroups are named, as the kubelet's --cgroup-driver. */
  readonly cgroupDriver: CgroupDriver;
  /** Makes every made-up UID of this cluster (UIDs differ between clusters, and between runs). */
  readonly uidSeed: string;
  readonly nodes: readonly SimNode[];
  readonly pods: readonly SimPod[];
  readonly services: readonly SimService[];
}

export interface PlanRequest {
  readonly name: string;
  readonly nodes: number;
  /** Pods per node for the generated set; with manifests, the most pods one node may take. */
  readonly podsPerNode: number;
  readonly manifests: readonly ManifestFile[];
  /** Default systemd, the kubelet's usual driver on cgroup v2. */
  readonly cgroupDriver?: CgroupDriver;
  /** Default: random. */
  readonly uidSeed?: string;
}

/** A UID of the form the API server makes, derived from the cluster's seed and the object. */
export function simUid(seed: string, what: string): string {
  const h = createHash('sha256').update(`${seed}\0${what}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((Number.parseInt(h.slice(16, 17), 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** A container id of containerd's form (64 hex), stable for the pod. */
export function simContainerId(podUid: string, container: string): string {
  return createHash('sha256').update(`${podUid}/${container}`).digest('hex');
}

/** Where a pod's cgroups go under its node's: the kubelet's names. */
export function podCgroups(node: SimNode, driver: CgroupDriver, qos: QosClass, uid: string, container = 'app'): { cgroup: string; containerCgroup: string } {
  const cgroup = `${node.cgroup}/${podCgroupRelative(driver, qos, uid)}`;
  return { cgroup, containerCgroup: `${cgroup}/${containerCgroupName(driver, simContainerId(uid, container))}` };
}

/** Each Pod's containers' resources (by namespace/name): what its QoS class comes from. */
function podResources(files: readonly ManifestFile[]): Map<string, ContainerResources[]> {
  const out = new Map<string, ContainerResources[]>();
  for (const o of splitManifests(files).objects) {
    if (o.kind !== 'Pod') continue;
    const md = (o.body.metadata ?? {}) as { name?: unknown; namespace?: unknown };
    const spec = (o.body.spec ?? {}) as { containers?: unknown; initContainers?: unknown };
    const containers = [spec.containers, spec.initContainers].flatMap((l): unknown[] => (Array.isArray(l) ? l as unknown[] : []))
      .map((c: unknown) => ((c as { resources?: ContainerResources } | null)?.resources ?? {}));
    out.set(`${typeof md.namespace === 'string' ? md.namespace : 'default'}/${String(md.name)}`, containers);
  }
  return out;
}

/** Kinds the control plane reads and the simulator has nothing to build for. */
const MESH_ONLY_KINDS: ReadonlySet<string> = new Set(['ServiceAccount', 'EndpointSlice', 'AuthorizationPolicy', 'PeerAuthentication']);

const CLUSTER_NAME = /^[a-z][a-z0-9]{0,11}$/;
/** A manifest set with thousands of mistakes must not print thousands of lines. */
const MAX_PROBLEM_LINES = 20;

export function validateClusterName(name: string): void {
  if (!CLUSTER_NAME.test(name)) {
    throw new WeftError(SimErrors.BAD_ARGUMENT, `--name ${JSON.stringify(name)} is not a valid cluster name: use 1-12 lowercase letters and digits, starting with a letter`);
  }
}

export const nodeName = (index: number): string => `node-${index}`;
export const clusterPrefix = (cluster: string): string => `weft-${cluster}-`;

export function planCluster(req: PlanRequest): ClusterPlan {
  validateClusterName(req.name);
  if (!Number.isInteger(req.nodes) || req.nodes < 1 || req.nodes > MAX_NODES) {
    throw new WeftError(SimErrors.BAD_ARGUMENT, `--nodes must be a whole number from 1 to ${MAX_NODES}, got ${req.nodes}`);
  }
  if (!Number.isInteger(req.podsPerNode) || req.podsPerNode < 0 || req.podsPerNode > MAX_PODS_PER_NODE) {
    throw new WeftError(SimErrors.BAD_ARGUMENT, `--pods-per-node must be a whole number from 0 to ${MAX_PODS_PER_NODE}, got ${req.podsPerNode}`);
  }
  const prefix = clusterPrefix(req.name);
  const cgroupDriver = req.cgroupDriver ?? 'systemd';
  const uidSeed = req.uidSeed ?? randomUUID();
  const resources = podResources(req.manifests);
  const nodes: SimNode[] = [];
  for (let i = 1; i <= req.nodes; i++) {
    nodes.push(Object.freeze({
      name: nodeName(i), index: i, ip: nodeUnderlayIp(i), bridgeIp: nodeBridgeIp(i), podCidr: podCidr(i),
      netns: `${prefix}n-${nodeName(i)}`, cgroup: `weft-${req.name}/${nodeName(i)}`,
    }));
  }

  const parsed = parseManifests(req.manifests, MESH_ONLY_KINDS);
  const problems: ManifestProblem[] = [...parsed.problems];
  // Which file each object came from, for the cross-object problems below.
  const fileOf = new Map<string, string>();
  for (const f of req.manifests) {
    const one = parseManifests([f], MESH_ONLY_KINDS);
    for (const p of one.pods) fileOf.set(`Pod/${p.namespace}/${p.name}`, f.path);
    for (const s of one.services) fileOf.set(`Service/${s.namespace}/${s.name}`, f.path);
  }
  const problem = (object: string, field: string, message: string): void => {
    problems.push({ file: fileOf.get(object) ?? '(manifests)', object, field, message });
  };

  const nsLabels = new Map(parsed.namespaces.map((n) => [n.name, n.labels]));
  const byNode = new Map(nodes.map((n) => [n.name, { node: n, used: new Set<string>(), count: 0 }]));
  const takenIps = new Map<string, string>();
  const pods: SimPod[] = [];
  let nextNode = 0;
  const capacity = req.podsPerNode > 0 ? req.podsPerNode : MAX_PODS_PER_NODE;
  // Pods with a fixed IP first, so generated addresses never collide with them.
  const ordered = [...parsed.pods].sort((a, b) => Number(b.ip !== undefined) - Number(a.ip !== undefined));
  for (const pod of ordered) {
    const id = `Pod/${pod.namespace}/${pod.name}`;
    let slot;
    if (pod.nodeName !== undefined) {
      slot = byNode.get(pod.nodeName);
      if (slot === undefined) {
        problem(id, 'spec.nodeName', `${JSON.stringify(pod.nodeName)} is not a node of this cluster (it has ${nodes[0]?.name}..${nodes.at(-1)?.name})`);
        continue;
      }
    } else {
      slot = byNode.get(nodes[nextNode++ % nodes.length]?.name ?? '');
      if (slot === undefined) continue;
    }
    if (slot.count >= capacity) {
      const limit = req.podsPerNode > 0 ? `--pods-per-node ${req.podsPerNode}` : `the simulator's limit of ${MAX_PODS_PER_NODE} pods per node`;
      problem(id, 'spec.nodeName', `${slot.node.name} is full: it holds ${capacity} pods (${limit})`);
      continue;
    }
    let ip = pod.ip;
    if (ip !== undefined) {
      if (!inCidr(ip, slot.node.podCidr) || slot.used.has(ip) || ip === slot.node.bridgeIp || Number(ip.split('.')[3]) < 10) {
        problem(id, 'status.podIP', `${ip} is not a free pod address of ${slot.node.name} (${slot.node.podCidr}, from .10)`);
        continue;
      }
    } else {
      let k = 0;
      while (slot.used.has(podIp(slot.node.index, k))) k++;
      if (k >= MAX_PODS_PER_NODE) {
        problem(id, 'spec.nodeName', `${slot.node.name} has no free pod address left`);
        continue;
      }
      ip = podIp(slot.node.index, k);
    }
    const other = takenIps.get(ip);
    if (other !== undefined) {
      problem(id, 'status.podIP', `${ip} is already the address of ${other}`);
      continue;
    }
    takenIps.set(ip, id);
    slot.used.add(ip);
    const host = Number(ip.split('.')[3]);
    slot.count++;
    const uid = pod.uid ?? simUid(uidSeed, `Pod/${pod.namespace}/${pod.name}`);
    const qos = qosClass(resources.get(`${pod.namespace}/${pod.name}`) ?? []);
    pods.push(Object.freeze({
      name: pod.name, namespace: pod.namespace, node: slot.node.name, ip,
      netns: `${prefix}p-${pod.namespace}.${pod.name}`,
      serviceAccount: pod.serviceAccount, labels: pod.labels,
      enrolled: pod.labels[MESH_LABEL] === MESH_ENABLED || nsLabels.get(pod.namespace)?.[MESH_LABEL] === MESH_ENABLED,
      uid, qos, ...podCgroups(slot.node, cgroupDriver, qos, uid),
      hostVeth: `vp${host}`,
    }));
  }

  const vips = new Map<string, string>();
  const services: SimService[] = [];
  for (const svc of parsed.services) {
    const id = `Service/${svc.namespace}/${svc.name}`;
    if (!inCidr(svc.vip, SERVICE_CIDR)) {
      problem(id, 'spec.clusterIP', `${svc.vip} is outside the simulator's service range ${SERVICE_CIDR}`);
      continue;
    }
    const other = vips.get(svc.vip);
    if (other !== undefined) {
      problem(id, 'spec.clusterIP', `${svc.vip} is already the VIP of ${other}`);
      continue;
    }
    vips.set(svc.vip, id);
    services.push(Object.freeze({
      name: svc.name, namespace: svc.namespace, vip: svc.vip, selector: svc.selector,
      ports: Object.freeze(svc.ports.map((p) => Object.freeze({ port: p.port, targetPort: p.targetPort }))),
    }));
  }

  if (problems.length > 0) {
    const shown = problems.slice(0, MAX_PROBLEM_LINES).map((p) => `  ${formatProblem(p)}`);
    if (problems.length > MAX_PROBLEM_LINES) shown.push(`  ... and ${problems.length - MAX_PROBLEM_LINES} more (weft vet lists them all)`);
    throw new WeftError(SimErrors.BAD_MANIFEST, `the manifests have ${problems.length} problem(s):\n${shown.join('\n')}`);
  }
  const byName = (a: SimPod, b: SimPod) => a.node.localeCompare(b.node, 'en', { numeric: true }) || a.ip.localeCompare(b.ip, 'en', { numeric: true });
  return Object.freeze({
    name: req.name, underlayNetns: `${prefix}underlay`, cgroup: `weft-${req.name}`, cgroupDriver, uidSeed,
    nodes: Object.freeze(nodes), pods: Object.freeze(pods.sort(byName)), services: Object.freeze(services),
  });
}
