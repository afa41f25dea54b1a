// MeshState: an immutable snapshot of the mesh with pure lookups. Built in two phases:
// parseObjects validates every object aside (one bad object rejects only itself), then
// buildMeshState resolves and indexes once. Conflicts (two services on one VIP, two pods
// on one IP) resolve deterministically to the first by `namespace/name`; crossCheck
// reports them.

import type {
  AuthorizationPolicyObject, Endpoint, MeshNode, MeshObjects, MeshService, ServicePort, Workload,
} from './types.ts';
import { DEFAULT_TRUST_DOMAIN, ROOT_NAMESPACE } from './types.ts';
import { resolveMesh, type MeshContent } from './resolve.ts';
import { compilePolicy, NO_POLICIES, policyApplies, type ApplicablePolicies, type CompiledPolicy, type PolicyView } from './authorize.ts';
import { isTrustDomain } from './spiffe.ts';
import { modelError, ModelErrors } from './errors.ts';
import type { RouteObject } from './route-types.ts';
import { compileRoutes, emptyRouteTable, type RouteTable } from './route-table.ts';

export interface ServiceAtVip {
  readonly service: MeshService;
  readonly port: ServicePort;
}

export interface MeshState extends PolicyView {
  readonly trustDomain: string;
  /** Sorted by key. */
  readonly workloads: readonly Workload[];
  readonly services: readonly MeshService[];
  readonly policies: readonly AuthorizationPolicyObject[];
  workload(key: string): Workload | undefined;
  service(key: string): MeshService | undefined;
  workloadByIp(ip: string): Workload | undefined;
  serviceByVip(ip: string, port: number): ServiceAtVip | undefined;
  /** Endpoints of a service port (the Service port, not the target port); empty when unknown. */
  endpoints(serviceKey: string, port: number): readonly Endpoint[];
  workloadsOnNode(node: string): readonly Workload[];
  /** Nodes that have at least one workload or a Node object, sorted. */
  nodes(): readonly string[];
  /** The node's Node object as resolved (name and address); undefined when no Node object names it. */
  node(name: string): MeshNode | undefined;
  /** Where the node's agent listens (its tunnel port 15008); undefined when no Node object gives an address. */
  nodeAddress(name: string): string | undefined;
  /** True when an enrolled workload with that service account is scheduled on the node (the CA's check). */
  hasServiceAccountOnNode(node: string, namespace: string, serviceAccount: string): boolean;
  /** HTTPRoutes and GRPCRoutes, sorted by `Kind/namespace/name`. */
  readonly routes: readonly RouteObject[];
  /**
   * The routes of a Service port, compiled once per snapshot, for decideRoute (route-match.ts);
   * a table with no route attached when none is (or the port is unknown to the Service).
   */
  routeTable(service: MeshService, port: number): RouteTable;
}

class Snapshot implements MeshState {
  readonly trustDomain: string;
  readonly workloads: readonly Workload[];
  readonly services: readonly MeshService[];
  readonly policies: readonly AuthorizationPolicyObject[];
  readonly routes: readonly RouteObject[];
  readonly #routeTables: ReadonlyMap<string, RouteTable>;
  readonly #workloads = new Map<string, Workload>();
  readonly #services = new Map<string, MeshService>();
  readonly #byIp = new Map<string, Workload>();
  readonly #byVip = new Map<string, ServiceAtVip>();
  readonly #endpoints = new Map<string, readonly Endpoint[]>();
  readonly #byNode = new Map<string, Workload[]>();
  readonly #nodes = new Map<string, MeshNode>();
  readonly #accounts = new Set<string>();
  readonly #policies = new Map<string, ApplicablePolicies>();

  constructor(content: MeshContent) {
    this.trustDomain = content.trustDomain;
    this.workloads = content.workloads;
    this.services = content.services;
    this.policies = content.policies;
    for (const w of content.workloads) {
      this.#workloads.set(w.key, w);
      if (w.ip !== undefined && !this.#byIp.has(w.ip)) this.#byIp.set(w.ip, w);
      if (w.node === undefined) continue;
      const onNode = this.#byNode.get(w.node);
      if (onNode === undefined) this.#byNode.set(w.node, [w]);
      else onNode.push(w);
      if (w.enrolled) this.#accounts.add(accountKey(w.node, w.namespace, w.serviceAccount));
    }
    for (const s of content.services) {
      this.#services.set(s.key, s);
      for (const p of s.ports) {
        const k = `${s.vip}:${p.port}`;
        if (!this.#byVip.has(k)) this.#byVip.set(k, Object.freeze({ service: s, port: p }));
      }
      for (const pe of s.endpoints) this.#endpoints.set(`${s.key}:${pe.port}`, pe.endpoints);
    }
    for (const n of content.nodes) if (!this.#nodes.has(n.name)) this.#nodes.set(n.name, n);
    this.#indexPolicies(content);
    this.routes = content.routes ?? [];
    const tables = compileRoutes(this.routes, this);
    // One table per Service port up front, so a request never allocates one.
    for (const svc of content.services) for (const p of svc.ports) if (!tables.has(`${svc.key}:${p.port}`)) tables.set(`${svc.key}:${p.port}`, emptyRouteTable(svc, p.port));
    this.#routeTables = tables;
    Object.freeze(this);
  }

  // Precomputed per workload so that a connection's check does not scan every policy.
  #indexPolicies(content: MeshContent): void {
    const compiled = content.policies.map(compilePolicy);
    const byNs = Map.groupBy(compiled, (c) => c.policy.namespace);
    const root = byNs.get(ROOT_NAMESPACE) ?? [];
    for (const w of content.workloads) {
      const candidates = w.namespace === ROOT_NAMESPACE ? root : [...root, ...(byNs.get(w.namespace) ?? [])];
      const applying = candidates.filter((c) => policyApplies(c.policy, w));
      if (applying.length === 0) continue;
      const pick = (action: 'ALLOW' | 'DENY', dry: boolean): readonly CompiledPolicy[] =>
        applying.filter((c) => c.policy.action === action && c.policy.dryRun === dry);
      this.#policies.set(w.key, Object.freeze({
        deny: pick('DENY', false), allow: pick('ALLOW', false), dryRunDeny: pick('DENY', true), dryRunAllow: pick('ALLOW', true),
      }));
    }
  }

  workload(key: string): Workload | undefined {
    return this.#workloads.get(key);
  }

  service(key: string): MeshService | undefined {
    return this.#services.get(key);
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.#byIp.get(ip);
  }

  serviceByVip(ip: string, port: number): ServiceAtVip | undefined {
    return this.#byVip.get(`${ip}:${port}`);
  }

  endpoints(serviceKey: string, port: number): readonly Endpoint[] {
    return this.#endpoints.get(`${serviceKey}:${port}`) ?? [];
  }

  workloadsOnNode(node: string): readonly Workload[] {
    return this.#byNode.get(node) ?? [];
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

  routeTable(service: MeshService, port: number): RouteTable {
    return this.#routeTables.get(`${service.key}:${port}`) ?? emptyRouteTable(service, port);
  }

  policiesFor(workload: Workload): ApplicablePolicies {
    return this.#policies.get(workload.key) ?? NO_POLICIES;
  }
}

function accountKey(node: string, namespace: string, serviceAccount: string): string {
  return `${node}\0${namespace}\0${serviceAccount}`;
}

export interface BuildOptions {
  readonly trustDomain?: string;
}

function checkTrustDomain(td: string): string {
  if (!isTrustDomain(td)) throw modelError(ModelErrors.BAD_SPIFFE_ID, `trust domain ${JSON.stringify(td)} must be lowercase letters, digits, '.', '-' or '_'`);
  return td;
}

/** Phase two: resolves validated objects and indexes them once. */
export function buildMeshState(objects: MeshObjects, options: BuildOptions = {}): MeshState {
  return new Snapshot(resolveMesh(objects, checkTrustDomain(options.trustDomain ?? DEFAULT_TRUST_DOMAIN)));
}

/** Indexes already-resolved content (e.g. what an agent received as node resources). */
export function meshStateFromContent(content: MeshContent): MeshState {
  checkTrustDomain(content.trustDomain);
  return new Snapshot(content);
}

export const EMPTY_OBJECTS: MeshObjects = Object.freeze({
  namespaces: [], pods: [], services: [], endpointSlices: [], serviceAccounts: [], policies: [], nodes: [], routes: [],
});
