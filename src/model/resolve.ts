// Turns parsed Kubernetes objects into the resolved mesh: workloads with their enrollment
// and identity, services with their endpoints (from EndpointSlices when a service has any,
// else from its selector over workloads), nodes with their addresses. Pure and
// deterministic: output is sorted by key, whatever order the objects came in. One function
// per resolved object (resolveWorkload, resolveService, ...), so that the incremental
// resolver (live-resolver.ts) and resolveMesh share them.

import type {
  AuthorizationPolicyObject, Endpoint, EndpointSliceObject, PeerAuthenticationObject, Labels, MeshNode, MeshObjects, MeshService, NamespaceObject, NodeObject, PodObject,
  ServiceObject, ServicePortEndpoints, Workload,
} from './types.ts';
import { MESH_ENABLED, MESH_LABEL } from './types.ts';
import { selects } from './labels.ts';
import { routeKey, type RouteObject } from './route-types.ts';
import { spiffeUri } from './spiffe.ts';
import { sortTrafficPolicies, type TrafficPolicyObject } from './traffic-policy-types.ts';

/** The resolved mesh: what MeshState indexes and what node resources carry. */
export interface MeshContent {
  readonly trustDomain: string;
  readonly workloads: readonly Workload[];
  readonly services: readonly MeshService[];
  readonly policies: readonly AuthorizationPolicyObject[];
  /** Nodes known from Node objects, sorted by name. */
  readonly nodes: readonly MeshNode[];
  /** HTTPRoutes and GRPCRoutes, sorted by `Kind/namespace/name`; absent means none. */
  readonly routes?: readonly RouteObject[];
  /** PeerAuthentications, sorted by `namespace/name`; absent means none (every workload PERMISSIVE). */
  readonly peerAuthentications?: readonly PeerAuthenticationObject[];
  /** DestinationPolicies, RateLimitPolicies and FaultInjections, sorted by `Kind/namespace/name`; absent means none. */
  readonly trafficPolicies?: readonly TrafficPolicyObject[];
}

/** Label value on a Pod that keeps it out of the mesh even in an enrolled namespace. */
export const MESH_DISABLED = 'disabled';

const byKey = <T extends { readonly key: string }>(a: T, b: T): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

export function compareEndpoints(a: Endpoint, b: Endpoint): number {
  if (a.ip !== b.ip) return a.ip < b.ip ? -1 : 1;
  return a.port - b.port;
}

/** Pods that are workloads: not host-network (they share the node IP), not finished (their IP may be reused). */
export function isLivePod(p: PodObject): boolean {
  return p.hostNetwork !== true && p.phase !== 'Succeeded' && p.phase !== 'Failed';
}

/** Whether a pod is enrolled: its own label decides, else its namespace's. */
export function podEnrolled(p: PodObject, namespaceEnrolled: boolean): boolean {
  const own = p.labels[MESH_LABEL];
  return own === MESH_ENABLED || (own !== MESH_DISABLED && namespaceEnrolled);
}

/** The namespace puts its pods in the mesh. */
export function namespaceEnrolled(n: NamespaceObject | undefined): boolean {
  return n?.labels[MESH_LABEL] === MESH_ENABLED;
}

/** One live pod as a workload. */
export function resolveWorkload(p: PodObject, enrolledNamespace: boolean, trustDomain: string): Workload {
  return Object.freeze({
    key: `${p.namespace}/${p.name}`, name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount,
    node: p.nodeName, ip: p.ip, ...(p.ipv6 === undefined ? {} : { ipv6: p.ipv6 }), labels: p.labels, enrolled: podEnrolled(p, enrolledNamespace),
    identity: spiffeUri(p.namespace, p.serviceAccount, trustDomain),
    ...(p.uid === undefined ? {} : { uid: p.uid }),
    ...(p.namedPorts === undefined ? {} : { ports: p.namedPorts }),
  });
}

function workloads(objects: MeshObjects, trustDomain: string): Workload[] {
  const enrolledNs = new Set(objects.namespaces.filter(namespaceEnrolled).map((n) => n.name));
  return objects.pods.filter(isLivePod).map((p) => resolveWorkload(p, enrolledNs.has(p.namespace), trustDomain)).sort(byKey);
}

// Two entries for one address and port (two pods claiming an IP, an address listed twice)
// keep the first by workload key, then node: the same whatever order the inputs came in.
function tieBreak(a: Endpoint, b: Endpoint): number {
  const c = compareEndpoints(a, b);
  if (c !== 0) return c;
  const wa = a.workload ?? '';
  const wb = b.workload ?? '';
  if (wa !== wb) return wa < wb ? -1 : 1;
  const na = a.node ?? '';
  const nb = b.node ?? '';
  return na < nb ? -1 : na > nb ? 1 : 0;
}

function dedupe(endpoints: Endpoint[]): Endpoint[] {
  endpoints.sort(tieBreak);
  return endpoints.filter((e, i) => i === 0 || compareEndpoints(e, endpoints[i - 1]) !== 0);
}

/** Workloads by `key=value` of each label, per namespace: selectors look at a few workloads, not all. */
function labelIndex(byNs: ReadonlyMap<string, readonly Workload[]>): Map<string, Map<string, Workload[]>> {
  const out = new Map<string, Map<string, Workload[]>>();
  for (const [ns, list] of byNs) {
    const byLabel = new Map<string, Workload[]>();
    for (const w of list) {
      for (const [k, v] of Object.entries(w.labels)) {
        const key = `${k}=${v}`;
        const bucket = byLabel.get(key);
        if (bucket === undefined) byLabel.set(key, [w]);
        else bucket.push(w);
      }
    }
    out.set(ns, byLabel);
  }
  return out;
}

/** What resolving one Service reads of the rest of the mesh. */
export interface ServiceLookups {
  workload(key: string): Workload | undefined;
  /** The workload an IP belongs to (the first by key when two share it). */
  workloadByIp(ip: string): Workload | undefined;
  /**
   * Workloads with an IP in `namespace` that may match `selector` (a superset of those it
   * selects; the caller filters), in any order.
   */
  selectorCandidates(namespace: string, selector: Labels): Iterable<Workload>;
}

/** The EndpointSlice a slice endpoint came from, in `namespace/name` order; ties in dedupe go to the first. */
export function compareSlices(a: EndpointSliceObject, b: EndpointSliceObject): number {
  const ka = `${a.namespace}/${a.name}`;
  const kb = `${b.namespace}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * One Service with its endpoints: from its EndpointSlices when it has any (`slices` sorted
 * with compareSlices), else from its selector over workloads with an IP.
 */
export function resolveService(svc: ServiceObject, slices: readonly EndpointSliceObject[] | undefined, lookups: ServiceLookups): MeshService {
  const key = `${svc.namespace}/${svc.name}`;
  let endpointSource: MeshService['endpointSource'] = 'none';
  let perPort: ServicePortEndpoints[];
  if (slices !== undefined && slices.length > 0) {
    endpointSource = 'EndpointSlice';
    perPort = svc.ports.map((sp) => {
      const eps: Endpoint[] = [];
      for (const slice of slices) {
        const target = slice.ports.find((p) => p.name === sp.name);
        if (target === undefined) continue;
        for (const e of slice.endpoints) {
          if (!e.ready) continue;
          for (const ip of e.addresses) {
            const byRef = e.podName === undefined ? undefined : lookups.workload(`${slice.namespace}/${e.podName}`);
            const w = byRef ?? lookups.workloadByIp(ip);
            eps.push(Object.freeze({ ip, port: target.port, node: e.nodeName ?? w?.node, workload: w?.key, weight: 1 }));
          }
        }
      }
      return Object.freeze({ port: sp.port, endpoints: Object.freeze(dedupe(eps)) });
    });
  } else {
    const selected: Workload[] = [];
    if (Object.keys(svc.selector).length > 0) {
      endpointSource = 'selector';
      for (const w of lookups.selectorCandidates(svc.namespace, svc.selector)) {
        if (w.ip !== undefined && w.namespace === svc.namespace && selects(svc.selector, w.labels)) selected.push(w);
      }
    }
    // A named target port is each pod's own container port of that name; a pod without one is
    // no endpoint of that port (as Kubernetes' endpoints controller does).
    perPort = svc.ports.map((sp) => Object.freeze({
      port: sp.port,
      endpoints: Object.freeze(dedupe(selected.flatMap((w) => {
        const target = typeof sp.targetPort === 'number' ? sp.targetPort : w.ports?.[sp.targetPort];
        return target === undefined ? [] : [Object.freeze({ ip: w.ip ?? '', port: target, node: w.node, workload: w.key, weight: 1 })];
      }))),
    }));
  }
  return Object.freeze({
    key, name: svc.name, namespace: svc.namespace, vip: svc.vip,
    ports: Object.freeze([...svc.ports].sort((a, b) => a.port - b.port)), endpointSource,
    endpoints: Object.freeze(perPort.sort((a, b) => a.port - b.port)),
  });
}

/** One Node object as the mesh sees it. */
export function resolveNode(n: NodeObject): MeshNode {
  return Object.freeze({ name: n.name, address: n.address });
}

/** Policies (of any kind) in `namespace/name` order. */
export function sortPolicies<P extends { readonly namespace: string; readonly name: string }>(policies: readonly P[]): P[] {
  return [...policies].sort((a, b) => {
    const ka = `${a.namespace}/${a.name}`;
    const kb = `${b.namespace}/${b.name}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}

/** Routes in `Kind/namespace/name` order. */
export function sortRoutes(routes: readonly RouteObject[]): RouteObject[] {
  return [...routes].sort((a, b) => (routeKey(a) < routeKey(b) ? -1 : routeKey(a) > routeKey(b) ? 1 : 0));
}

/** Resolves objects into the mesh. Objects must already be validated (parseObjects). */
export function resolveMesh(objects: MeshObjects, trustDomain: string): MeshContent {
  const ws = workloads(objects, trustDomain);
  const wsByKey = new Map(ws.map((w) => [w.key, w]));
  const wsByIp = new Map<string, Workload>();
  for (const w of ws) if (w.ip !== undefined && !wsByIp.has(w.ip)) wsByIp.set(w.ip, w);
  const slicesBySvc = Map.groupBy([...objects.endpointSlices].sort(compareSlices), (s) => `${s.namespace}/${s.serviceName}`);
  const byLabel = labelIndex(Map.groupBy(ws.filter((w) => w.ip !== undefined), (w) => w.namespace));
  const lookups: ServiceLookups = {
    workload: (key) => wsByKey.get(key),
    workloadByIp: (ip) => wsByIp.get(ip),
    // The workloads carrying the selector's rarest label.
    selectorCandidates: (namespace, selector) => {
      const inNs = byLabel.get(namespace);
      let best: readonly Workload[] = [];
      let first = true;
      for (const [k, v] of Object.entries(selector)) {
        const list = inNs?.get(`${k}=${v}`) ?? [];
        if (first || list.length < best.length) best = list;
        first = false;
      }
      return best;
    },
  };
  const services = objects.services.map((svc) => resolveService(svc, slicesBySvc.get(`${svc.namespace}/${svc.name}`), lookups)).sort(byKey);
  const nodes = objects.nodes.map(resolveNode).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return Object.freeze({
    trustDomain, workloads: Object.freeze(ws), services: Object.freeze(services), policies: Object.freeze(sortPolicies(objects.policies)), nodes: Object.freeze(nodes),
    routes: Object.freeze(sortRoutes(objects.routes ?? [])), peerAuthentications: Object.freeze(sortPolicies(objects.peerAuthentications ?? [])),
    trafficPolicies: sortTrafficPolicies(objects.trafficPolicies ?? []),
  });
}
