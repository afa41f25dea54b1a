// Turns parsed Kubernetes objects into the resolved mesh: workloads with their enrollment
// and identity, services with their endpoints (from EndpointSlices when a service has any,
// else from its selector over pods), nodes with their addresses. Pure and deterministic:
// output is sorted by key.

import type {
  AuthorizationPolicyObject, Endpoint, Labels, MeshNode, MeshObjects, MeshService, PodObject, ServicePortEndpoints, Workload,
} from './types.ts';
import { MESH_ENABLED, MESH_LABEL } from './types.ts';
import { selects } from './labels.ts';
import { routeKey, type RouteObject } from './route-types.ts';
import { spiffeUri } from './spiffe.ts';

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

function workloads(objects: MeshObjects, trustDomain: string): Workload[] {
  const enrolledNs = new Set(objects.namespaces.filter((n) => n.labels[MESH_LABEL] === MESH_ENABLED).map((n) => n.name));
  return objects.pods.filter(isLivePod).map((p): Workload => {
    const own = p.labels[MESH_LABEL];
    const enrolled = own === MESH_ENABLED || (own !== MESH_DISABLED && enrolledNs.has(p.namespace));
    return Object.freeze({
      key: `${p.namespace}/${p.name}`, name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount,
      node: p.nodeName, ip: p.ip, ...(p.ipv6 === undefined ? {} : { ipv6: p.ipv6 }), labels: p.labels, enrolled,
      identity: spiffeUri(p.namespace, p.serviceAccount, trustDomain),
    });
  }).sort(byKey);
}

function dedupe(endpoints: Endpoint[]): Endpoint[] {
  endpoints.sort(compareEndpoints);
  return endpoints.filter((e, i) => i === 0 || compareEndpoints(e, endpoints[i - 1]) !== 0);
}

/** Pods by namespace, then by `key=value` of each label: selectors look at a few pods, not all. */
function labelIndex(podsByNs: ReadonlyMap<string, readonly PodObject[]>): Map<string, Map<string, PodObject[]>> {
  const out = new Map<string, Map<string, PodObject[]>>();
  for (const [ns, pods] of podsByNs) {
    const byLabel = new Map<string, PodObject[]>();
    for (const p of pods) {
      for (const [k, v] of Object.entries(p.labels)) {
        const key = `${k}=${v}`;
        const list = byLabel.get(key);
        if (list === undefined) byLabel.set(key, [p]);
        else list.push(p);
      }
    }
    out.set(ns, byLabel);
  }
  return out;
}

/** The pods carrying the selector's rarest label: a superset of those it selects, in namespace order. */
function candidates(index: ReadonlyMap<string, ReadonlyMap<string, readonly PodObject[]>>, namespace: string, selector: Labels): readonly PodObject[] {
  const byLabel = index.get(namespace);
  let best: readonly PodObject[] = [];
  let first = true;
  for (const [k, v] of Object.entries(selector)) {
    const list = byLabel?.get(`${k}=${v}`) ?? [];
    if (first || list.length < best.length) best = list;
    first = false;
  }
  return best;
}

/** Resolves objects into the mesh. Objects must already be validated (parseObjects). */
export function resolveMesh(objects: MeshObjects, trustDomain: string): MeshContent {
  const ws = workloads(objects, trustDomain);
  const wsByKey = new Map(ws.map((w) => [w.key, w]));
  const wsByIp = new Map<string, Workload>();
  for (const w of ws) if (w.ip !== undefined && !wsByIp.has(w.ip)) wsByIp.set(w.ip, w);
  const slicesBySvc = Map.groupBy(objects.endpointSlices, (s) => `${s.namespace}/${s.serviceName}`);
  const podsByNs = Map.groupBy(objects.pods.filter((p) => isLivePod(p) && p.ip !== undefined), (p) => p.namespace);
  const podsByLabel = labelIndex(podsByNs);

  const services = objects.services.map((svc): MeshService => {
    const key = `${svc.namespace}/${svc.name}`;
    const slices = slicesBySvc.get(key);
    let endpointSource: MeshService['endpointSource'] = 'none';
    let perPort: ServicePortEndpoints[];
    if (slices !== undefined) {
      endpointSource = 'EndpointSlice';
      perPort = svc.ports.map((sp) => {
        const eps: Endpoint[] = [];
        for (const slice of slices) {
          const target = slice.ports.find((p) => p.name === sp.name);
          if (target === undefined) continue;
          for (const e of slice.endpoints) {
            if (!e.ready) continue;
            for (const ip of e.addresses) {
              const byRef = e.podName === undefined ? undefined : wsByKey.get(`${slice.namespace}/${e.podName}`);
              const w = byRef ?? wsByIp.get(ip);
              eps.push(Object.freeze({ ip, port: target.port, node: e.nodeName ?? w?.node, workload: w?.key, weight: 1 }));
            }
          }
        }
        return Object.freeze({ port: sp.port, endpoints: Object.freeze(dedupe(eps)) });
      });
    } else {
      const pods = Object.keys(svc.selector).length === 0
        ? []
        : candidates(podsByLabel, svc.namespace, svc.selector).filter((p) => selects(svc.selector, p.labels));
      if (Object.keys(svc.selector).length > 0) endpointSource = 'selector';
      perPort = svc.ports.map((sp) => Object.freeze({
        port: sp.port,
        endpoints: Object.freeze(dedupe(pods.map((p) => Object.freeze({
          ip: p.ip ?? '', port: sp.targetPort, node: p.nodeName, workload: `${p.namespace}/${p.name}`, weight: 1,
        })))),
      }));
    }
    return Object.freeze({
      key, name: svc.name, namespace: svc.namespace, vip: svc.vip,
      ports: Object.freeze([...svc.ports].sort((a, b) => a.port - b.port)), endpointSource,
      endpoints: Object.freeze(perPort.sort((a, b) => a.port - b.port)),
    });
  }).sort(byKey);

  const policies = [...objects.policies].sort((a, b) => {
    const ka = `${a.namespace}/${a.name}`;
    const kb = `${b.namespace}/${b.name}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  const nodes = objects.nodes
    .map((n): MeshNode => Object.freeze({ name: n.name, address: n.address }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const routes = [...(objects.routes ?? [])].sort((a, b) => (routeKey(a) < routeKey(b) ? -1 : routeKey(a) > routeKey(b) ? 1 : 0));
  return Object.freeze({
    trustDomain, workloads: Object.freeze(ws), services: Object.freeze(services), policies: Object.freeze(policies), nodes: Object.freeze(nodes),
    routes: Object.freeze(routes),
  });
}
