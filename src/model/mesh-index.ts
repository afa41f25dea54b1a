// MeshIndex: the lookups of MeshState over resolved content, kept up to date one object at
// a time. An agent fills one from the content it received (meshStateFromContent); the
// control plane's live resolver updates one in place as objects change, so a change costs
// what it touches, not the size of the mesh. Conflicts (two workloads on one IP, two
// services on one VIP and port) go to the first by `namespace/name`, as resolveMesh sorts.

import { sortTrafficPolicies, type TrafficPolicyObject } from './traffic-policy-types.ts';
import type { AuthorizationPolicyObject, Endpoint, MeshNode, MeshService, PeerAuthenticationObject, Workload } from './types.ts';
import { mtlsModeFor, type MtlsDecision } from './peer-authentication.ts';
import { ROOT_NAMESPACE } from './types.ts';
import { compilePolicy, NO_POLICIES, policyApplies, type ApplicablePolicies, type CompiledPolicy } from './authorize.ts';
import type { MeshState, ServiceAtVip } from './state.ts';
import type { RouteObject } from './route-types.ts';
import { compileRoutes, emptyRouteTable, type RouteTable } from './route-table.ts';

const byKey = <T extends { readonly key: string }>(a: T, b: T): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Keys claiming one name (an IP, a VIP and port), smallest first: the first is the owner. */
class Claims {
  readonly #claims = new Map<string, string[]>();

  add(name: string, key: string): void {
    const list = this.#claims.get(name);
    if (list === undefined) {
      this.#claims.set(name, [key]);
      return;
    }
    if (list.includes(key)) return;
    list.push(key);
    list.sort();
  }

  remove(name: string, key: string): void {
    const list = this.#claims.get(name);
    if (list === undefined) return;
    const i = list.indexOf(key);
    if (i < 0) return;
    if (list.length === 1) this.#claims.delete(name);
    else list.splice(i, 1);
  }

  owner(name: string): string | undefined {
    return this.#claims.get(name)?.[0];
  }
}

function accountKey(node: string, namespace: string, serviceAccount: string): string {
  return `${node}\0${namespace}\0${serviceAccount}`;
}

export class MeshIndex implements MeshState {
  readonly trustDomain: string;
  readonly #workloads = new Map<string, Workload>();
  readonly #services = new Map<string, MeshService>();
  readonly #ips = new Claims();
  readonly #vips = new Claims();
  readonly #byNode = new Map<string, Map<string, Workload>>();
  readonly #nodeLists = new Map<string, readonly Workload[]>();
  readonly #nodes = new Map<string, MeshNode>();
  /** Enrolled workloads per `node\0namespace\0serviceAccount`. */
  readonly #accounts = new Map<string, number>();
  #policies: readonly AuthorizationPolicyObject[] = Object.freeze([]);
  #compiled = new Map<string, readonly CompiledPolicy[]>();
  /** policiesFor, per workload key, for the workload object it was computed for. */
  readonly #applicable = new Map<string, { readonly workload: Workload; readonly policies: ApplicablePolicies }>();
  #peerAuthentications: readonly PeerAuthenticationObject[] = Object.freeze([]);
  /** mtlsModeFor, per workload key, for the workload object it was computed for. */
  readonly #mtls = new Map<string, { readonly workload: Workload; readonly decision: MtlsDecision }>();
  #routes: readonly RouteObject[] = Object.freeze([]);
  #trafficPolicies: readonly TrafficPolicyObject[] = Object.freeze([]);
  /** Route tables per `service:port`, compiled on first use after the routes or services changed. */
  #routeTables: Map<string, RouteTable> | undefined;
  #sortedWorkloads: readonly Workload[] | undefined;
  #sortedServices: readonly MeshService[] | undefined;
  #frozen = false;

  constructor(trustDomain: string) {
    this.trustDomain = trustDomain;
  }

  /** No update is taken afterwards: the index is then an immutable snapshot. */
  freeze(): this {
    this.#frozen = true;
    return Object.freeze(this);
  }

  #mutable(): void {
    if (this.#frozen) throw new TypeError('this MeshIndex is frozen (a snapshot); it takes no updates');
  }

  // ---- updates ------------------------------------------------------------------------------

  /** Adds or replaces the workload with `w.key`. */
  putWorkload(w: Workload): void {
    this.#mutable();
    this.removeWorkload(w.key);
    this.#workloads.set(w.key, w);
    if (w.ip !== undefined) this.#ips.add(w.ip, w.key);
    if (w.node !== undefined) {
      let onNode = this.#byNode.get(w.node);
      if (onNode === undefined) this.#byNode.set(w.node, (onNode = new Map<string, Workload>()));
      onNode.set(w.key, w);
      this.#nodeLists.delete(w.node);
      if (w.enrolled) {
        const k = accountKey(w.node, w.namespace, w.serviceAccount);
        this.#accounts.set(k, (this.#accounts.get(k) ?? 0) + 1);
      }
    }
    this.#sortedWorkloads = undefined;
  }

  removeWorkload(key: string): void {
    this.#mutable();
    const w = this.#workloads.get(key);
    if (w === undefined) return;
    this.#workloads.delete(key);
    this.#applicable.delete(key);
    this.#mtls.delete(key);
    if (w.ip !== undefined) this.#ips.remove(w.ip, key);
    if (w.node !== undefined) {
      const onNode = this.#byNode.get(w.node);
      onNode?.delete(key);
      if (onNode?.size === 0) this.#byNode.delete(w.node);
      this.#nodeLists.delete(w.node);
      if (w.enrolled) {
        const k = accountKey(w.node, w.namespace, w.serviceAccount);
        const n = (this.#accounts.get(k) ?? 0) - 1;
        if (n > 0) this.#accounts.set(k, n);
        else this.#accounts.delete(k);
      }
    }
    this.#sortedWorkloads = undefined;
  }

  putService(s: MeshService): void {
    this.#mutable();
    this.removeService(s.key);
    this.#services.set(s.key, s);
    for (const p of s.ports) this.#vips.add(`${s.vip}:${p.port}`, s.key);
    this.#sortedServices = undefined;
    this.#routeTables = undefined;
  }

  removeService(key: string): void {
    this.#mutable();
    const s = this.#services.get(key);
    if (s === undefined) return;
    this.#services.delete(key);
    for (const p of s.ports) this.#vips.remove(`${s.vip}:${p.port}`, key);
    this.#sortedServices = undefined;
    this.#routeTables = undefined;
  }

  putNode(n: MeshNode): void {
    this.#mutable();
    this.#nodes.set(n.name, n);
  }

  removeNode(name: string): void {
    this.#mutable();
    this.#nodes.delete(name);
  }

  /** Replaces every policy (they are few; each connection's check reads a per-workload precomputed set). */
  setPolicies(policies: readonly AuthorizationPolicyObject[]): void {
    this.#mutable();
    const sorted = [...policies].sort((a, b) => {
      const ka = `${a.namespace}/${a.name}`;
      const kb = `${b.namespace}/${b.name}`;
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
    this.#policies = Object.freeze(sorted);
    this.#compiled = Map.groupBy(sorted.map(compilePolicy), (c) => c.policy.namespace);
    this.#applicable.clear();
  }

  /** Replaces every PeerAuthentication (few; each workload's mode is computed once). */
  setPeerAuthentications(policies: readonly PeerAuthenticationObject[]): void {
    this.#mutable();
    this.#peerAuthentications = Object.freeze([...policies].sort((a, b) => {
      const ka = `${a.namespace}/${a.name}`;
      const kb = `${b.namespace}/${b.name}`;
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    }));
    this.#mtls.clear();
  }

  /** Replaces every HTTPRoute and GRPCRoute (sorted by `Kind/namespace/name` by the caller). */
  setRoutes(routes: readonly RouteObject[]): void {
    this.#mutable();
    this.#routes = Object.freeze([...routes]);
    this.#routeTables = undefined;
  }

  /** Replaces every DestinationPolicy, RateLimitPolicy and FaultInjection (few). */
  setTrafficPolicies(policies: readonly TrafficPolicyObject[]): void {
    this.#mutable();
    this.#trafficPolicies = sortTrafficPolicies(policies);
  }

  // ---- MeshState ----------------------------------------------------------------------------

  get workloads(): readonly Workload[] {
    this.#sortedWorkloads ??= Object.freeze([...this.#workloads.values()].sort(byKey));
    return this.#sortedWorkloads;
  }

  get services(): readonly MeshService[] {
    this.#sortedServices ??= Object.freeze([...this.#services.values()].sort(byKey));
    return this.#sortedServices;
  }

  get policies(): readonly AuthorizationPolicyObject[] {
    return this.#policies;
  }

  get peerAuthentications(): readonly PeerAuthenticationObject[] {
    return this.#peerAuthentications;
  }

  mtlsModeFor(workload: Workload): MtlsDecision {
    const cached = this.#mtls.get(workload.key);
    if (cached?.workload === workload) return cached.decision;
    const decision = mtlsModeFor(this.#peerAuthentications, workload);
    if (this.#workloads.get(workload.key) === workload) this.#mtls.set(workload.key, { workload, decision });
    return decision;
  }

  get routes(): readonly RouteObject[] {
    return this.#routes;
  }

  get trafficPolicies(): readonly TrafficPolicyObject[] {
    return this.#trafficPolicies;
  }

  routeTable(service: MeshService, port: number): RouteTable {
    if (this.#routeTables === undefined) {
      const tables = compileRoutes(this.#routes, this);
      // One table per Service port up front, so a request never allocates one.
      for (const svc of this.#services.values()) for (const p of svc.ports) if (!tables.has(`${svc.key}:${p.port}`)) tables.set(`${svc.key}:${p.port}`, emptyRouteTable(svc, p.port));
      this.#routeTables = tables;
    }
    return this.#routeTables.get(`${service.key}:${port}`) ?? emptyRouteTable(service, port);
  }

  /** How many workloads (without sorting them). */
  get workloadCount(): number {
    return this.#workloads.size;
  }

  get serviceCount(): number {
    return this.#services.size;
  }

  workload(key: string): Workload | undefined {
    return this.#workloads.get(key);
  }

  service(key: string): MeshService | undefined {
    return this.#services.get(key);
  }

  workloadByIp(ip: string): Workload | undefined {
    const key = this.#ips.owner(ip);
    return key === undefined ? undefined : this.#workloads.get(key);
  }

  serviceByVip(ip: string, port: number): ServiceAtVip | undefined {
    const key = this.#vips.owner(`${ip}:${port}`);
    const service = key === undefined ? undefined : this.#services.get(key);
    const p = service?.ports.find((sp) => sp.port === port);
    return service === undefined || p === undefined ? undefined : { service, port: p };
  }

  endpoints(serviceKey: string, port: number): readonly Endpoint[] {
    return this.#services.get(serviceKey)?.endpoints.find((pe) => pe.port === port)?.endpoints ?? [];
  }

  workloadsOnNode(node: string): readonly Workload[] {
    let list = this.#nodeLists.get(node);
    if (list === undefined) {
      const onNode = this.#byNode.get(node);
      if (onNode === undefined) return [];
      list = Object.freeze([...onNode.values()].sort(byKey));
      this.#nodeLists.set(node, list);
    }
    return list;
  }

  /** Nodes hosting at least one workload, in no particular order. */
  nodesWithWorkloads(): Iterable<string> {
    return this.#byNode.keys();
  }

  nodes(): readonly string[] {
    return [...new Set([...this.#byNode.keys(), ...this.#nodes.keys()])].sort();
  }

  node(name: string): MeshNode | undefined {
    return this.#nodes.get(name);
  }

  nodeAddress(name: string): string | undefined {
    return this.#nodes.get(name)?.address;
  }

  hasServiceAccountOnNode(node: string, namespace: string, serviceAccount: string): boolean {
    return this.#accounts.has(accountKey(node, namespace, serviceAccount));
  }

  // Computed once per workload object, so that a connection's check does not scan every policy.
  policiesFor(workload: Workload): ApplicablePolicies {
    const cached = this.#applicable.get(workload.key);
    if (cached?.workload === workload) return cached.policies;
    const root = this.#compiled.get(ROOT_NAMESPACE) ?? [];
    const candidates = workload.namespace === ROOT_NAMESPACE ? root : [...root, ...(this.#compiled.get(workload.namespace) ?? [])];
    const applying = candidates.filter((c) => policyApplies(c.policy, workload));
    let policies = NO_POLICIES;
    if (applying.length > 0) {
      const pick = (action: 'ALLOW' | 'DENY', dry: boolean): readonly CompiledPolicy[] =>
        applying.filter((c) => c.policy.action === action && c.policy.dryRun === dry);
      policies = Object.freeze({ deny: pick('DENY', false), allow: pick('ALLOW', false), dryRunDeny: pick('DENY', true), dryRunAllow: pick('ALLOW', true) });
    }
    // Only workloads the index holds are remembered (a caller may ask about any object).
    if (this.#workloads.get(workload.key) === workload) this.#applicable.set(workload.key, { workload, policies });
    return policies;
  }
}
