// Phase two, one object at a time: keeps a MeshIndex equal to what resolveMesh would build
// from the objects held, re-resolving only what a change touches. A pod change re-resolves
// its workload and the services that select it (old or new labels, through an index of
// selectors by label) or whose EndpointSlices name it (by pod or IP); a namespace's
// enrollment change re-resolves its pods. Resolution itself is resolve.ts's, shared with
// resolveMesh. Each apply reports what changed, with the versions before, for the node
// slices (slice-index.ts).
//
// Adding a kind: a case in `#take` (where its objects are kept and what they make dirty),
// and, when it resolves into content, the re-resolution step and a field of ContentChanges.

import type { TrafficPolicyObject } from './traffic-policy-types.ts';
import type {
  AuthorizationPolicyObject, EndpointSliceObject, Labels, MeshNode, MeshService, NamespaceObject, NodeObject, PeerAuthenticationObject, PodObject,
  ServiceAccountObject, ServiceObject, Workload,
} from './types.ts';
import { compareSlices, isLivePod, namespaceEnrolled, resolveNode, resolveService, resolveWorkload, sortRoutes, type ServiceLookups } from './resolve.ts';
import type { RouteObject } from './route-types.ts';
import { MeshIndex } from './mesh-index.ts';
import type { ParsedChange } from './object-store.ts';

/** What one apply changed in the resolved mesh; the values are the versions before (undefined: new). */
export interface ContentChanges {
  readonly workloads: ReadonlyMap<string, Workload | undefined>;
  readonly services: ReadonlyMap<string, MeshService | undefined>;
  readonly nodes: ReadonlyMap<string, MeshNode | undefined>;
  /** Namespaces whose AuthorizationPolicies or PeerAuthentications changed (ROOT_NAMESPACE's apply mesh-wide). */
  readonly policyNamespaces: ReadonlySet<string>;
  /** Some HTTPRoute or GRPCRoute changed. */
  readonly routes: boolean;
  /** Some DestinationPolicy, RateLimitPolicy or FaultInjection changed. */
  readonly trafficPolicies?: boolean;
}

interface Dirty {
  readonly pods: Set<string>;
  readonly services: Set<string>;
  readonly nodes: Set<string>;
  readonly policyNamespaces: Set<string>;
  routes: boolean;
  peerAuthentications: boolean;
  trafficPolicies: boolean;
}

function addTo<K, V>(map: Map<K, Set<V>>, k: K, v: V): void {
  let set = map.get(k);
  if (set === undefined) map.set(k, (set = new Set()));
  set.add(v);
}

function removeFrom<K, V>(map: Map<K, Set<V>>, k: K, v: V): void {
  const set = map.get(k);
  if (set === undefined) return;
  set.delete(v);
  if (set.size === 0) map.delete(k);
}

function sameLabels(a: Labels, b: Labels): boolean {
  if (a === b) return true;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}

function sameWorkload(a: Workload | undefined, b: Workload | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.key === b.key && a.serviceAccount === b.serviceAccount && a.node === b.node && a.ip === b.ip && a.enrolled === b.enrolled
    && (a.ipv6 ?? []).join(',') === (b.ipv6 ?? []).join(',')
    && a.identity === b.identity && sameLabels(a.labels, b.labels) && samePorts(a.ports, b.ports);
}

function samePorts(a: Readonly<Record<string, number>> | undefined, b: Readonly<Record<string, number>> | undefined): boolean {
  const ea = Object.entries(a ?? {});
  return ea.length === Object.keys(b ?? {}).length && ea.every(([k, v]) => b?.[k] === v);
}

function pairs(labels: Labels): string[] {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`);
}

/** `ns/name` from an object key `Kind/ns/name` (cluster-scoped kinds: `Kind//name` gives `/name`). */
function nsName(key: string): { namespace: string; name: string } {
  const [, namespace = '', name = ''] = key.split('/', 3);
  return { namespace, name };
}

export class LiveResolver {
  readonly index: MeshIndex;
  readonly #namespaces = new Map<string, NamespaceObject>();
  readonly #pods = new Map<string, PodObject>();
  readonly #podsByNs = new Map<string, Set<string>>();
  readonly #services = new Map<string, ServiceObject>();
  readonly #slices = new Map<string, EndpointSliceObject>();
  readonly #slicesBySvc = new Map<string, Map<string, EndpointSliceObject>>();
  readonly #policies = new Map<string, AuthorizationPolicyObject>();
  readonly #peerAuthentications = new Map<string, PeerAuthenticationObject>();
  readonly #nodes = new Map<string, NodeObject>();
  readonly #accounts = new Map<string, ServiceAccountObject>();
  readonly #routes = new Map<string, RouteObject>();
  readonly #trafficPolicies = new Map<string, TrafficPolicyObject>();
  /** Workloads with an IP, per namespace, per `key=value` label. */
  readonly #byLabel = new Map<string, Map<string, Set<string>>>();
  /** Selector-resolved services, per namespace, under one pair of their selector (a workload they select carries it). */
  readonly #selectorServices = new Map<string, Map<string, Set<string>>>();
  readonly #indexedUnder = new Map<string, { readonly namespace: string; readonly pair: string }>();
  /** EndpointSlice-resolved services by the pods and IPs their ready endpoints name. */
  readonly #refsByPod = new Map<string, Set<string>>();
  readonly #refsByIp = new Map<string, Set<string>>();
  readonly #refsOf = new Map<string, { readonly pods: readonly string[]; readonly ips: readonly string[] }>();
  readonly #lookups: ServiceLookups;

  constructor(trustDomain: string) {
    this.index = new MeshIndex(trustDomain);
    this.#lookups = {
      workload: (key) => this.index.workload(key),
      workloadByIp: (ip) => this.index.workloadByIp(ip),
      selectorCandidates: (namespace, selector) => this.#candidates(namespace, selector),
    };
  }

  apply(changes: readonly ParsedChange[]): ContentChanges {
    const dirty: Dirty = { pods: new Set(), services: new Set(), nodes: new Set(), policyNamespaces: new Set(), routes: false, peerAuthentications: false, trafficPolicies: false };
    for (const c of changes) this.#take(c, dirty);
    const workloads = new Map<string, Workload | undefined>();
    for (const key of dirty.pods) this.#resolvePod(key, workloads, dirty.services);
    const services = new Map<string, MeshService | undefined>();
    for (const key of dirty.services) this.#resolveService(key, services);
    const nodes = new Map<string, MeshNode | undefined>();
    for (const name of dirty.nodes) {
      const before = this.index.node(name);
      const n = this.#nodes.get(name);
      if (n === undefined) this.index.removeNode(name);
      else this.index.putNode(resolveNode(n));
      if (before !== undefined || n !== undefined) nodes.set(name, before);
    }
    if (dirty.policyNamespaces.size > 0) this.index.setPolicies([...this.#policies.values()]);
    if (dirty.peerAuthentications) this.index.setPeerAuthentications([...this.#peerAuthentications.values()]);
    if (dirty.routes) this.index.setRoutes(sortRoutes([...this.#routes.values()]));
    if (dirty.trafficPolicies) this.index.setTrafficPolicies([...this.#trafficPolicies.values()]);
    return { workloads, services, nodes, policyNamespaces: dirty.policyNamespaces, routes: dirty.routes, trafficPolicies: dirty.trafficPolicies };
  }

  namespaceNames(): string[] {
    return [...this.#namespaces.keys()].sort();
  }

  /** How many objects of each kind are held. */
  counts(): Record<string, number> {
    return {
      namespaces: this.#namespaces.size, pods: this.#pods.size, services: this.#services.size, endpointSlices: this.#slices.size,
      serviceAccounts: this.#accounts.size, policies: this.#policies.size,
      peerAuthentications: this.#peerAuthentications.size, nodes: this.#nodes.size, routes: this.#routes.size, trafficPolicies: this.#trafficPolicies.size,
    };
  }

  // Keeps the object and marks what it makes dirty.
  #take(c: ParsedChange, dirty: Dirty): void {
    const { namespace, name } = nsName(c.key);
    const key = `${namespace}/${name}`;
    switch (c.kind) {
      case 'Namespace': {
        const before = this.#namespaces.get(name);
        if (c.value === undefined) this.#namespaces.delete(name);
        else this.#namespaces.set(name, c.value);
        if (namespaceEnrolled(before) !== namespaceEnrolled(c.value)) for (const pod of this.#podsByNs.get(name) ?? []) dirty.pods.add(pod);
        return;
      }
      case 'Pod':
        if (c.value === undefined) {
          this.#pods.delete(key);
          removeFrom(this.#podsByNs, namespace, key);
        } else {
          this.#pods.set(key, c.value);
          addTo(this.#podsByNs, namespace, key);
        }
        dirty.pods.add(key);
        return;
      case 'Service':
        if (c.value === undefined) this.#services.delete(key);
        else this.#services.set(key, c.value);
        dirty.services.add(key);
        return;
      case 'EndpointSlice': {
        const before = this.#slices.get(key);
        if (before !== undefined) {
          const svc = `${before.namespace}/${before.serviceName}`;
          const bySvc = this.#slicesBySvc.get(svc);
          bySvc?.delete(key);
          if (bySvc?.size === 0) this.#slicesBySvc.delete(svc);
          dirty.services.add(svc);
        }
        if (c.value === undefined) {
          this.#slices.delete(key);
          return;
        }
        this.#slices.set(key, c.value);
        const svc = `${c.value.namespace}/${c.value.serviceName}`;
        let bySvc = this.#slicesBySvc.get(svc);
        if (bySvc === undefined) this.#slicesBySvc.set(svc, (bySvc = new Map<string, EndpointSliceObject>()));
        bySvc.set(key, c.value);
        dirty.services.add(svc);
        return;
      }
      case 'AuthorizationPolicy':
        if (c.value === undefined) this.#policies.delete(key);
        else this.#policies.set(key, c.value);
        dirty.policyNamespaces.add(namespace);
        return;
      case 'PeerAuthentication':
        // Few, like AuthorizationPolicies, and they reach the same nodes: marked the same way.
        if (c.value === undefined) this.#peerAuthentications.delete(key);
        else this.#peerAuthentications.set(key, c.value);
        dirty.policyNamespaces.add(namespace);
        dirty.peerAuthentications = true;
        return;
      case 'Node':
        if (c.value === undefined) this.#nodes.delete(name);
        else this.#nodes.set(name, c.value);
        dirty.nodes.add(name);
        return;
      case 'HTTPRoute':
      case 'GRPCRoute':
        // Few, and compiled together per Service port: kept as one list.
        if (c.value === undefined) this.#routes.delete(c.key);
        else this.#routes.set(c.key, c.value);
        dirty.routes = true;
        return;
      case 'DestinationPolicy':
      case 'RateLimitPolicy':
      case 'FaultInjection':
        // Few, and they reach nodes by Services, selectors and routes: kept as one list.
        if (c.value === undefined) this.#trafficPolicies.delete(c.key);
        else this.#trafficPolicies.set(c.key, c.value);
        dirty.trafficPolicies = true;
        return;
      case 'ServiceAccount':
        // Kept for completeness; nothing in the resolved mesh reads ServiceAccounts.
        if (c.value === undefined) this.#accounts.delete(key);
        else this.#accounts.set(key, c.value);
        return;
      default: {
        const unknown: never = c;
        throw new Error(`the live resolver does not know kind ${(unknown as { kind: string }).kind}`);
      }
    }
  }

  #resolvePod(key: string, changed: Map<string, Workload | undefined>, dirtyServices: Set<string>): void {
    const pod = this.#pods.get(key);
    const before = this.index.workload(key);
    const after = pod !== undefined && isLivePod(pod)
      ? resolveWorkload(pod, namespaceEnrolled(this.#namespaces.get(pod.namespace)), this.index.trustDomain)
      : undefined;
    if (sameWorkload(before, after)) return;
    if (before?.ip !== undefined) for (const p of pairs(before.labels)) removeFrom(this.#byLabelIn(before.namespace), p, key);
    if (after?.ip !== undefined) for (const p of pairs(after.labels)) addTo(this.#byLabelIn(after.namespace), p, key);
    if (after === undefined) this.index.removeWorkload(key);
    else this.index.putWorkload(after);
    if (!changed.has(key)) changed.set(key, before);
    // Enrollment and identity do not change endpoints; existence, IP, node, labels and named ports may.
    const moved = before === undefined || after === undefined || before.ip !== after.ip || before.node !== after.node
      || !sameLabels(before.labels, after.labels) || !samePorts(before.ports, after.ports);
    if (!moved) return;
    for (const w of [before, after]) {
      if (w?.ip === undefined) continue;
      const bySelector = this.#selectorServices.get(w.namespace);
      if (bySelector !== undefined) for (const p of pairs(w.labels)) for (const s of bySelector.get(p) ?? []) dirtyServices.add(s);
      for (const s of this.#refsByIp.get(w.ip) ?? []) dirtyServices.add(s);
    }
    for (const s of this.#refsByPod.get(key) ?? []) dirtyServices.add(s);
  }

  #byLabelIn(namespace: string): Map<string, Set<string>> {
    let m = this.#byLabel.get(namespace);
    if (m === undefined) this.#byLabel.set(namespace, (m = new Map<string, Set<string>>()));
    return m;
  }

  // The workloads carrying the selector's rarest label.
  *#candidates(namespace: string, selector: Labels): Iterable<Workload> {
    const inNs = this.#byLabel.get(namespace);
    let best: ReadonlySet<string> | undefined;
    for (const p of pairs(selector)) {
      const set = inNs?.get(p);
      if (set === undefined) return;
      if (best === undefined || set.size < best.size) best = set;
    }
    for (const key of best ?? []) {
      const w = this.index.workload(key);
      if (w !== undefined) yield w;
    }
  }

  #resolveService(key: string, changed: Map<string, MeshService | undefined>): void {
    const before = this.index.service(key);
    this.#unregister(key);
    const svc = this.#services.get(key);
    if (svc === undefined) {
      if (before !== undefined) {
        this.index.removeService(key);
        changed.set(key, before);
      }
      return;
    }
    const slices = [...(this.#slicesBySvc.get(key)?.values() ?? [])].sort(compareSlices);
    this.index.putService(resolveService(svc, slices, this.#lookups));
    changed.set(key, before);
    if (slices.length > 0) {
      const pods: string[] = [];
      const ips: string[] = [];
      for (const slice of slices) {
        for (const e of slice.endpoints) {
          if (!e.ready) continue;
          if (e.podName !== undefined) pods.push(`${slice.namespace}/${e.podName}`);
          ips.push(...e.addresses);
        }
      }
      for (const p of pods) addTo(this.#refsByPod, p, key);
      for (const ip of ips) addTo(this.#refsByIp, ip, key);
      this.#refsOf.set(key, { pods, ips });
      return;
    }
    const selectorPairs = pairs(svc.selector);
    if (selectorPairs.length === 0) return;
    // Indexed under the pair fewest workloads carry now, so a pod change looks at few services.
    const inNs = this.#byLabel.get(svc.namespace);
    let pair = selectorPairs[0];
    for (const p of selectorPairs) if ((inNs?.get(p)?.size ?? 0) < (inNs?.get(pair)?.size ?? 0)) pair = p;
    let bySelector = this.#selectorServices.get(svc.namespace);
    if (bySelector === undefined) this.#selectorServices.set(svc.namespace, (bySelector = new Map<string, Set<string>>()));
    addTo(bySelector, pair, key);
    this.#indexedUnder.set(key, { namespace: svc.namespace, pair });
  }

  #unregister(key: string): void {
    const refs = this.#refsOf.get(key);
    if (refs !== undefined) {
      for (const p of refs.pods) removeFrom(this.#refsByPod, p, key);
      for (const ip of refs.ips) removeFrom(this.#refsByIp, ip, key);
      this.#refsOf.delete(key);
    }
    const at = this.#indexedUnder.get(key);
    if (at !== undefined) {
      const bySelector = this.#selectorServices.get(at.namespace);
      if (bySelector !== undefined) {
        removeFrom(bySelector, at.pair, key);
        if (bySelector.size === 0) this.#selectorServices.delete(at.namespace);
      }
      this.#indexedUnder.delete(key);
    }
  }
}
