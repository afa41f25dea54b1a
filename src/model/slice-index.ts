// Phase three, one change at a time: every node's resources (what nodeResources gives for
// the current state), kept up to date from the live resolver's ContentChanges, with a
// bounded history of what changed so that the control plane pushes each agent only the
// difference since what it holds, however far behind it is, without a copy per agent.
//
// A node's resources are three layers: `global` (every node: the trust bundle), the node's
// own `local` part (mesh config, its workloads with labels, the policies and identities of
// its enrolled workloads: localSlice, O(its workloads)) and, when it is meshed, the `shared`
// part every meshed node gets (peers without labels, services, the nodes it may tunnel to).
// Its own workloads override their peer form, and a meshed node that hosts no endpoint
// hides its own node address (nodeSlice's rule). A change recomputes the local part of the
// nodes it touches and the shared entries it changed, so it costs what it touches.
//
// Adding a resource type: in localSlice when it depends on the node's workloads (and
// ContentChanges says which namespaces' nodes to recompute), or as a shared entry here.

import type { MeshNode, MeshService } from './types.ts';
import { ROOT_NAMESPACE } from './types.ts';
import { isServiceParent, routeKey } from './route-types.ts';
import { trafficPolicyKey } from './traffic-policy-types.ts';
import { localSlice, newResource, peerForm, resourceKey, serviceBodies, type EndpointBody, type NodeResource, type ResourceType, type ServiceBody } from './node-slice.ts';
import type { MeshIndex } from './mesh-index.ts';
import type { ContentChanges } from './live-resolver.ts';

const HIDDEN = Symbol('hidden');
type LocalEntry = NodeResource | typeof HIDDEN;

/** One generation's changes: every key that changed, with its value before. */
interface Generation {
  readonly generation: number;
  readonly global: Map<string, NodeResource | undefined>;
  readonly shared: Map<string, NodeResource | undefined>;
  readonly local: Map<string, Map<string, LocalEntry | undefined>>;
  /** Nodes whose meshed flag flipped, with the flag before. */
  readonly meshed: Map<string, boolean>;
  size: number;
}

export interface SliceIndexOptions {
  /**
   * Changed keys remembered (all generations together; the newest generation is always
   * kept whole). An agent further behind is resynced from scratch. Default 50,000.
   */
  readonly historyLimit?: number;
}

function count(map: Map<string, number>, key: string, by: number): boolean {
  const before = map.get(key) ?? 0;
  const after = before + by;
  if (after > 0) map.set(key, after);
  else map.delete(key);
  return (before > 0) !== (after > 0);
}

function sameEndpoint(a: EndpointBody, b: EndpointBody): boolean {
  return a.service === b.service && a.port === b.port && a.ip === b.ip && a.targetPort === b.targetPort && a.node === b.node
    && a.workload === b.workload && a.weight === b.weight;
}

// Ports come from the parsed Service object: the same objects while the Service is unchanged.
function sameServiceBody(a: ServiceBody, b: ServiceBody): boolean {
  return a.key === b.key && a.vip === b.vip && a.endpointSource === b.endpointSource && a.name === b.name && a.namespace === b.namespace
    && a.ports.length === b.ports.length && a.ports.every((p, i) => p === b.ports[i]);
}

function endpointNodes(s: MeshService | undefined): string[] {
  const out: string[] = [];
  if (s === undefined) return out;
  for (const pe of s.endpoints) for (const e of pe.endpoints) if (e.node !== undefined) out.push(e.node);
  return out;
}

export class SliceIndex {
  readonly #state: MeshIndex;
  readonly #historyLimit: number;
  readonly #global = new Map<string, NodeResource>();
  readonly #shared = new Map<string, NodeResource>();
  readonly #local = new Map<string, Map<string, LocalEntry>>();
  readonly #meshed = new Set<string>();
  /** Workloads with an IP per node (their node is called by every other meshed node). */
  readonly #withWorkloads = new Map<string, number>();
  /** Service endpoints per node. */
  readonly #withEndpoints = new Map<string, number>();
  /** The shared keys of each service: its own and its endpoints'. */
  readonly #serviceKeys = new Map<string, readonly string[]>();
  /** Workloads per namespace per node: the nodes a policy change in a namespace can reach. */
  readonly #nsNodes = new Map<string, Map<string, number>>();
  /** Per node: its mesh config, and the local part of a node without workloads (that config alone). */
  readonly #meshConfig = new Map<string, { readonly resource: NodeResource; readonly alone: ReadonlyMap<string, LocalEntry> }>();
  /** changesSince's common part, per since-generation, for the current generation. */
  #common: { generation: number; bySince: Map<number, ReadonlyMap<string, NodeResource | undefined>> } = { generation: -1, bySince: new Map() };
  /** `namespace/name` of every Service some route names as a parent. */
  #routeParents: ReadonlySet<string> = new Set();
  readonly #log: Generation[] = [];
  #logSize = 0;
  #generation = 0;
  /** changesSince answers for any generation at or after this one. */
  #horizon = 0;

  constructor(state: MeshIndex, options: SliceIndexOptions = {}) {
    this.#state = state;
    this.#historyLimit = options.historyLimit ?? 50_000;
  }

  /** Increases with every change to some node's resources. */
  get generation(): number {
    return this.#generation;
  }

  /** Updates after the resolver applied `changes` to the state. */
  apply(changes: ContentChanges): void {
    const g = this.#open();
    const touched = new Set<string>();
    const nodeRefs = new Set<string>();
    for (const [key, before] of changes.workloads) {
      const after = this.#state.workload(key);
      for (const w of [before, after]) if (w?.node !== undefined) touched.add(w.node);
      const inNs = before?.node === undefined ? undefined : this.#nsNodes.get(before.namespace);
      if (inNs !== undefined && before?.node !== undefined) {
        count(inNs, before.node, -1);
        if (inNs.size === 0) this.#nsNodes.delete(before.namespace);
      }
      if (after?.node !== undefined) {
        let m = this.#nsNodes.get(after.namespace);
        if (m === undefined) this.#nsNodes.set(after.namespace, (m = new Map<string, number>()));
        count(m, after.node, 1);
      }
      if (before?.ip !== undefined && before.node !== undefined && count(this.#withWorkloads, before.node, -1)) nodeRefs.add(before.node);
      if (after?.ip !== undefined && after.node !== undefined && count(this.#withWorkloads, after.node, 1)) nodeRefs.add(after.node);
      this.#setShared(g, resourceKey('workload', key), after?.ip === undefined ? undefined : newResource('workload', key, peerForm(after)));
    }
    for (const [key, before] of changes.services) {
      const after = this.#state.service(key);
      for (const n of endpointNodes(before)) {
        if (count(this.#withEndpoints, n, -1)) {
          nodeRefs.add(n);
          touched.add(n);
        }
      }
      for (const n of endpointNodes(after)) {
        if (count(this.#withEndpoints, n, 1)) {
          nodeRefs.add(n);
          touched.add(n);
        }
      }
      // The Service and one resource per endpoint: a pod joining or leaving sends its endpoint only.
      // A service re-resolved because one pod moved keeps its other endpoints as they are:
      // equal bodies reuse the resource already made (no hashing again).
      const entries: [string, NodeResource][] = [];
      if (after !== undefined) {
        const parts = serviceBodies(after);
        const sk = resourceKey('service', key);
        const was = this.#shared.get(sk);
        entries.push([sk, was !== undefined && sameServiceBody(was.body as ServiceBody, parts.service) ? was : newResource('service', key, parts.service)]);
        for (const [name, body] of parts.endpoints) {
          const ek = resourceKey('endpoint', name);
          const prev = this.#shared.get(ek);
          entries.push([ek, prev !== undefined && sameEndpoint(prev.body as EndpointBody, body) ? prev : newResource('endpoint', name, body)]);
        }
      }
      const keys = entries.map(([k]) => k);
      const now = new Set(keys);
      for (const k of this.#serviceKeys.get(key) ?? []) if (!now.has(k)) this.#setShared(g, k, undefined);
      for (const [k, r] of entries) this.#setShared(g, k, r);
      if (after === undefined) this.#serviceKeys.delete(key);
      else this.#serviceKeys.set(key, keys);
    }
    for (const name of changes.nodes.keys()) nodeRefs.add(name);
    for (const name of nodeRefs) {
      const n: MeshNode | undefined = this.#state.node(name);
      const called = this.#withEndpoints.has(name) || this.#withWorkloads.has(name);
      const k = resourceKey('node', name);
      this.#setShared(g, k, called && n !== undefined ? this.#resource('node', name, n, this.#shared.get(k)) : undefined);
    }
    if (changes.routes) {
      this.#routeParents = new Set(this.#state.routes.flatMap((r) => r.parentRefs.filter(isServiceParent).map((p) => `${p.namespace}/${p.name}`)));
    }
    // Routes go to nodes by which parent Services exist: a route or such a Service coming or
    // going reaches every node (both are rare, and routes are few).
    // Traffic policies likewise (few; they reach nodes by Services, selectors and routes).
    let everyNode = changes.routes || changes.trafficPolicies === true;
    if (!everyNode && this.#state.trafficPolicies.length > 0) {
      const targets = new Set(this.#state.trafficPolicies.flatMap((p) => (p.kind !== 'FaultInjection' && p.targetRef !== undefined ? [`${p.namespace}/${p.targetRef.name}`] : [])));
      for (const key of changes.services.keys()) if (targets.has(key)) everyNode = true;
    }
    for (const [key, before] of changes.services) if ((before === undefined) !== (this.#state.service(key) === undefined) && this.#routeParents.has(key)) everyNode = true;
    if (everyNode) for (const n of this.#state.nodesWithWorkloads()) touched.add(n);
    for (const ns of changes.policyNamespaces) {
      const reach = ns === ROOT_NAMESPACE ? [...this.#nsNodes.values()] : [this.#nsNodes.get(ns) ?? new Map<string, number>()];
      for (const m of reach) for (const n of m.keys()) touched.add(n);
    }
    for (const n of touched) this.#recomputeLocal(g, n);
    this.#close(g);
  }

  /** A resource every node holds (meshed or not), e.g. the trust bundle; undefined removes it. */
  setGlobal(resource: NodeResource | { readonly type: string; readonly name: string; readonly version: string; readonly body: unknown } | undefined, key?: string): void {
    const k = resource === undefined ? key : `${resource.type}/${resource.name}`;
    if (k === undefined) throw new TypeError('setGlobal(undefined) needs the key to remove');
    const g = this.#open();
    const before = this.#global.get(k);
    if (before?.version !== resource?.version) {
      g.global.set(k, before);
      g.size++;
      if (resource === undefined) this.#global.delete(k);
      else this.#global.set(k, resource as NodeResource);
    }
    this.#close(g);
  }

  // ---- what the control plane's server reads ----------------------------------------------

  /** The resource `key` for the node now; undefined when the node should not hold it. */
  current(node: string, key: string): NodeResource | undefined {
    return this.#at(this.#localOf(node).get(key), this.#meshed.has(node), this.#shared.get(key), this.#global.get(key));
  }

  /**
   * Every resource the node should hold, keyed `type/name` (any order). Read lazily, each
   * as it is now when reached: a caller may take it in parts while the index changes (it
   * then misses or repeats only what changed meanwhile, which changesSince lists).
   */
  *entries(node: string): Iterable<readonly [string, NodeResource]> {
    yield* this.#global;
    const local = this.#localOf(node);
    // A node's local part is replaced whole when it changes: read each key afresh.
    for (const k of local.keys()) {
      const r = this.current(node, k);
      if (r !== undefined) yield [k, r];
    }
    if (!this.#meshed.has(node)) return;
    for (const [k, r] of this.#shared) if (!this.#localOf(node).has(k)) yield [k, r];
  }

  /**
   * The node's resources in two layers, for a first sync shared between agents: the shared
   * part (sharedEntries, when the node is meshed) and its own (global and local entries, which
   * win over shared ones), less the shared keys it hides (its own node address).
   */
  layers(node: string): { readonly shared: boolean; readonly own: Array<readonly [string, NodeResource]>; readonly hidden: string[] } {
    const own: Array<readonly [string, NodeResource]> = [...this.#global];
    const hidden: string[] = [];
    for (const [k, l] of this.#localOf(node)) {
      if (this.#global.has(k)) continue;
      if (l === HIDDEN) {
        if (this.#shared.has(k)) hidden.push(k);
      } else own.push([k, l]);
    }
    const meshed = this.#meshed.has(node);
    return { shared: meshed, own, hidden: meshed ? hidden : [] };
  }

  /** What every meshed node holds unless its own entries say otherwise (see layers). */
  sharedEntries(): ReadonlyMap<string, NodeResource> {
    return this.#shared;
  }

  /** Every resource the node should hold now, keyed `type/name` (in no particular order). */
  resources(node: string): Map<string, NodeResource> {
    return new Map(this.entries(node));
  }

  /**
   * Every key whose resource for the node may differ between generation `since` and now,
   * with the resource it had at `since` (undefined: none). Undefined when `since` is older
   * than the history kept: the caller must resync the node's agent from scratch.
   */
  changesSince(node: string, since: number): ReadonlyMap<string, NodeResource | undefined> | undefined {
    if (since < this.#horizon || since > this.#generation) return undefined;
    const first = this.#firstAfter(since);
    let own = false;
    for (let i = first; i < this.#log.length && !own; i++) {
      const g = this.#log[i];
      own = g.local.has(node) || g.meshed.has(node);
    }
    // The common case under churn: nothing of the node's own changed, so what it must be
    // sent is what every meshed (or every unmeshed) node must, computed once per generation.
    if (!own) {
      const meshed = this.#meshed.has(node);
      const common = this.#commonSince(since, first, meshed);
      const local = this.#localOf(node);
      let mine: Map<string, NodeResource | undefined> | undefined;
      for (const k of common.keys()) {
        if (!local.has(k)) continue;
        // Its own (unchanged) local entry is what it held for that key.
        mine ??= new Map(common);
        const l = local.get(k);
        mine.set(k, l === HIDDEN ? undefined : l);
      }
      return mine ?? common;
    }
    return this.#changesOf(node, first);
  }

  /** Changes since `since` of the global and (for a meshed node) shared parts, in key order; cached per generation. */
  #commonSince(since: number, first: number, meshed: boolean): ReadonlyMap<string, NodeResource | undefined> {
    if (this.#common.generation !== this.#generation) this.#common = { generation: this.#generation, bySince: new Map() };
    const id = meshed ? since : -1 - since;
    const cached = this.#common.bySince.get(id);
    if (cached !== undefined) return cached;
    const then = new Map<string, NodeResource | undefined>();
    for (let i = first; i < this.#log.length; i++) {
      const g = this.#log[i];
      for (const [k, v] of g.global) if (!then.has(k)) then.set(k, v);
      if (meshed) for (const [k, v] of g.shared) if (!then.has(k)) then.set(k, v);
    }
    const out = new Map([...then].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    this.#common.bySince.set(id, out);
    return out;
  }

  #changesOf(node: string, first: number): ReadonlyMap<string, NodeResource | undefined> {
    const globalThen = new Map<string, NodeResource | undefined>();
    const sharedThen = new Map<string, NodeResource | undefined>();
    const localThen = new Map<string, LocalEntry | undefined>();
    let meshedThen: boolean | undefined;
    for (let i = first; i < this.#log.length; i++) {
      const g = this.#log[i];
      for (const [k, v] of g.global) if (!globalThen.has(k)) globalThen.set(k, v);
      for (const [k, v] of g.shared) if (!sharedThen.has(k)) sharedThen.set(k, v);
      const local = g.local.get(node);
      if (local !== undefined) for (const [k, v] of local) if (!localThen.has(k)) localThen.set(k, v);
      const flip = g.meshed.get(node);
      if (flip !== undefined && meshedThen === undefined) meshedThen = flip;
    }
    const meshedNow = this.#meshed.has(node);
    const wasMeshed = meshedThen ?? meshedNow;
    const keys = new Set<string>([...globalThen.keys(), ...localThen.keys()]);
    if (wasMeshed || meshedNow) for (const k of sharedThen.keys()) keys.add(k);
    // Meshed then and not now, or the reverse: every shared key comes or goes.
    if (wasMeshed !== meshedNow) for (const k of this.#shared.keys()) keys.add(k);
    const local = this.#localOf(node);
    const out = new Map<string, NodeResource | undefined>();
    for (const k of [...keys].sort()) {
      const then = this.#at(
        localThen.has(k) ? localThen.get(k) : local.get(k),
        wasMeshed,
        sharedThen.has(k) ? sharedThen.get(k) : this.#shared.get(k),
        globalThen.has(k) ? globalThen.get(k) : this.#global.get(k),
      );
      out.set(k, then);
    }
    return out;
  }

  // ---- internals ----------------------------------------------------------------------------

  #at(local: LocalEntry | undefined, meshed: boolean, shared: NodeResource | undefined, global: NodeResource | undefined): NodeResource | undefined {
    if (global !== undefined) return global;
    if (local === HIDDEN) return undefined;
    if (local !== undefined) return local;
    return meshed ? shared : undefined;
  }

  /** `previous` when it has this very body (an unchanged object), else a new resource. */
  #resource(type: ResourceType, name: string, body: object, previous: LocalEntry | undefined): NodeResource {
    return previous !== undefined && previous !== HIDDEN && previous.body === body ? previous : newResource(type, name, body);
  }

  #configOf(node: string): { readonly resource: NodeResource; readonly alone: ReadonlyMap<string, LocalEntry> } {
    let c = this.#meshConfig.get(node);
    if (c === undefined) {
      const resource = newResource('mesh', 'config', Object.freeze({ trustDomain: this.#state.trustDomain, node }));
      c = { resource, alone: new Map([[resourceKey('mesh', 'config'), resource]]) };
      this.#meshConfig.set(node, c);
    }
    return c;
  }

  #localOf(node: string): ReadonlyMap<string, LocalEntry> {
    return this.#local.get(node) ?? this.#configOf(node).alone;
  }

  #recomputeLocal(g: Generation, node: string): void {
    const slice = localSlice(this.#state, node);
    const before = this.#localOf(node);
    const next = new Map<string, LocalEntry>([[resourceKey('mesh', 'config'), this.#configOf(node).resource]]);
    const put = (type: ResourceType, name: string, body: object): void => {
      const k = resourceKey(type, name);
      next.set(k, this.#resource(type, name, body, before.get(k)));
    };
    for (const w of slice.workloads) put('workload', w.key, w);
    for (const p of slice.policies) {
      const name = `${p.namespace}/${p.name}`;
      put('authorization', name, p);
    }
    for (const p of slice.peerAuthentications) {
      const name = `${p.namespace}/${p.name}`;
      put('peerauthentication', name, p);
    }
    for (const r of slice.routes) {
      const name = routeKey(r);
      put('route', name, r);
    }
    for (const p of slice.trafficPolicies) {
      const name = trafficPolicyKey(p);
      put('trafficpolicy', name, p);
    }
    for (const i of slice.serviceAccounts) {
      const name = `${i.namespace}/${i.serviceAccount}`;
      // Identities are rebuilt each time (small): the one already sent stays when equal (below).
      put('identity', name, i);
    }
    if (slice.meshed && !this.#withEndpoints.has(node)) next.set(resourceKey('node', node), HIDDEN);
    let log = g.local.get(node);
    const record = (k: string, v: LocalEntry | undefined): void => {
      if (log === undefined) g.local.set(node, (log = new Map<string, LocalEntry | undefined>()));
      if (!log.has(k)) {
        log.set(k, v);
        g.size++;
      }
    };
    for (const [k, v] of next) {
      const was = before.get(k);
      if (was === v) continue;
      // An equal body rebuilt (a policy list recomputed): keep the object already sent.
      if (was !== undefined && was !== HIDDEN && v !== HIDDEN && was.version === v.version) {
        next.set(k, was);
        continue;
      }
      record(k, was);
    }
    for (const [k, v] of before) if (!next.has(k)) record(k, v);
    if (slice.meshed !== this.#meshed.has(node)) {
      if (!g.meshed.has(node)) {
        g.meshed.set(node, !slice.meshed);
        g.size++;
      }
      if (slice.meshed) this.#meshed.add(node);
      else this.#meshed.delete(node);
    }
    if (slice.workloads.length === 0) this.#local.delete(node);
    else this.#local.set(node, next);
  }

  #setShared(g: Generation, key: string, r: NodeResource | undefined): void {
    const before = this.#shared.get(key);
    if (before === r || (before !== undefined && r !== undefined && before.version === r.version)) return;
    if (!g.shared.has(key)) {
      g.shared.set(key, before);
      g.size++;
    }
    if (r === undefined) this.#shared.delete(key);
    else this.#shared.set(key, r);
  }

  #open(): Generation {
    return { generation: this.#generation + 1, global: new Map(), shared: new Map(), local: new Map(), meshed: new Map(), size: 0 };
  }

  #close(g: Generation): void {
    if (g.size === 0) return;
    this.#generation = g.generation;
    this.#log.push(g);
    this.#logSize += g.size;
    while (this.#log.length > 1 && this.#logSize > this.#historyLimit) {
      const dropped = this.#log.shift() as Generation;
      this.#logSize -= dropped.size;
      this.#horizon = dropped.generation;
    }
  }

  /** Index of the first logged generation after `since`. */
  #firstAfter(since: number): number {
    let lo = 0;
    let hi = this.#log.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.#log[mid]).generation <= since) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
