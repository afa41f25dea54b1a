// What one node's agent needs, and the versioned resource form the control plane pushes.
// A node with no enrolled workload captures nothing, so it gets no services, peers or
// node addresses.
// Resource versions are content hashes of canonical JSON, so the same content always has
// the same version, whichever control-plane replica computed it, and a push carries only
// the resources whose version changed.

import { createHash } from 'node:crypto';
import type { AuthorizationPolicyObject, MeshNode, MeshService, PeerAuthenticationObject, Workload } from './types.ts';
import { peerAuthenticationsFor } from './peer-authentication.ts';
import type { MeshState } from './state.ts';
import { isServiceParent, routeKey, type RouteObject } from './route-types.ts';
import { trafficPolicyKey, type TrafficPolicyObject } from './traffic-policy-types.ts';
import { trafficPoliciesForNode } from './traffic-policy-slice.ts';

export interface NodeIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** SPIFFE id. */
  readonly identity: string;
}

export interface NodeSlice {
  readonly node: string;
  readonly trustDomain: string;
  /** Workloads scheduled on the node, enrolled or not. */
  readonly workloads: readonly Workload[];
  /** Workloads elsewhere that have an IP (for pod-IP destinations and endpoint identities); labels dropped. */
  readonly peers: readonly Workload[];
  /** Every service with its endpoints and their nodes. */
  readonly services: readonly MeshService[];
  /** Policies applying to the node's enrolled workloads. */
  readonly policies: readonly AuthorizationPolicyObject[];
  /** PeerAuthentications applying to the node's enrolled workloads (at any scope). */
  readonly peerAuthentications: readonly PeerAuthenticationObject[];
  /**
   * Routes the node's callers may meet: producer routes of existing Services (every caller),
   * consumer routes only where an enrolled workload lives in the route's namespace.
   */
  readonly routes: readonly RouteObject[];
  /** DestinationPolicies, RateLimitPolicies and FaultInjections its agent enforces (traffic-policy-slice.ts). */
  readonly trafficPolicies: readonly TrafficPolicyObject[];
  /** Service accounts of the node's enrolled workloads: the certificates its agent may ask for. */
  readonly serviceAccounts: readonly NodeIdentity[];
  /**
   * Addresses of the nodes its agent may tunnel to: those hosting a peer or a service
   * endpoint (the node itself when it hosts an endpoint), by name; nodes without a Node
   * object are left out.
   */
  readonly nodes: readonly MeshNode[];
}

/** Nodes a meshed node's agent may call, before removing the node itself. Once per state. */
export interface CalledNodes {
  /** Nodes hosting a workload that has an IP (the peers of every other node). */
  readonly withWorkloads: ReadonlySet<string>;
  /** Nodes hosting an endpoint of some service. */
  readonly withEndpoints: ReadonlySet<string>;
}

export function calledNodes(state: MeshState): CalledNodes {
  const withWorkloads = new Set<string>();
  const withEndpoints = new Set<string>();
  for (const w of state.workloads) if (w.node !== undefined && w.ip !== undefined) withWorkloads.add(w.node);
  for (const s of state.services) {
    for (const pe of s.endpoints) for (const e of pe.endpoints) if (e.node !== undefined) withEndpoints.add(e.node);
  }
  return Object.freeze({ withWorkloads, withEndpoints });
}

function sliceNodes(state: MeshState, node: string, called: CalledNodes): MeshNode[] {
  const names = new Set(called.withEndpoints);
  for (const n of called.withWorkloads) if (n !== node) names.add(n);
  const out: MeshNode[] = [];
  for (const name of [...names].sort()) {
    const n = state.node(name);
    if (n !== undefined) out.push(n);
  }
  return out;
}

/** Whether a route can affect requests from the node's enrolled workloads (in `namespaces`). */
function routeReaches(state: MeshState, r: RouteObject, namespaces: ReadonlySet<string>): boolean {
  return r.parentRefs.some((p) => isServiceParent(p) && state.service(`${p.namespace}/${p.name}`) !== undefined
    && (p.namespace === r.namespace || namespaces.has(r.namespace)));
}

/**
 * The part of a node's slice that depends on the node itself: O(its workloads, plus the
 * routes, which are few), whatever the size of the mesh.
 */
export interface LocalSlice {
  /** Workloads scheduled on the node, enrolled or not. */
  readonly workloads: readonly Workload[];
  /** Policies applying to the node's enrolled workloads, by `namespace/name`. */
  readonly policies: readonly AuthorizationPolicyObject[];
  /** PeerAuthentications applying to the node's enrolled workloads, by `namespace/name`. */
  readonly peerAuthentications: readonly PeerAuthenticationObject[];
  /** Routes the node's callers may meet (empty unless meshed), in the state's order. */
  readonly routes: readonly RouteObject[];
  /** Traffic policies its agent enforces, by `Kind/namespace/name`. */
  readonly trafficPolicies: readonly TrafficPolicyObject[];
  /** Service accounts of the node's enrolled workloads, by `namespace/serviceAccount`. */
  readonly serviceAccounts: readonly NodeIdentity[];
  /** The node has an enrolled workload: its agent captures, so it also gets peers, services and node addresses. */
  readonly meshed: boolean;
}

export function localSlice(state: MeshState, node: string): LocalSlice {
  const local = state.workloadsOnNode(node);
  const enrolled = local.filter((w) => w.enrolled);
  const policies = new Map<string, AuthorizationPolicyObject>();
  const peerAuthentications = new Map<string, PeerAuthenticationObject>();
  const accounts = new Map<string, NodeIdentity>();
  for (const w of enrolled) {
    const p = state.policiesFor(w);
    for (const c of [...p.deny, ...p.allow, ...p.dryRunDeny, ...p.dryRunAllow]) policies.set(c.key, c.policy);
    for (const pa of peerAuthenticationsFor(state.peerAuthentications, w)) peerAuthentications.set(`${pa.namespace}/${pa.name}`, pa);
    accounts.set(`${w.namespace}/${w.serviceAccount}`, Object.freeze({ namespace: w.namespace, serviceAccount: w.serviceAccount, identity: w.identity }));
  }
  const enrolledNamespaces = new Set(enrolled.map((w) => w.namespace));
  const sortedValues = <T>(m: Map<string, T>): T[] => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, v]) => v);
  const meshed = enrolled.length > 0;
  const routes = meshed ? state.routes.filter((r) => routeReaches(state, r, enrolledNamespaces)) : [];
  return {
    workloads: local, policies: sortedValues(policies), peerAuthentications: sortedValues(peerAuthentications), serviceAccounts: sortedValues(accounts), meshed,
    routes, trafficPolicies: trafficPoliciesForNode(state, enrolled, routes, meshed),
  };
}

/** A workload as other nodes see it: labels dropped (policy selection happens at the destination). */
export function peerForm(w: Workload): Workload {
  return Object.freeze({ ...w, labels: Object.freeze({}) });
}

export function nodeSlice(state: MeshState, node: string, cache?: ResourceCache): NodeSlice {
  const local = localSlice(state, node);
  const meshed = local.meshed;
  return Object.freeze({
    node,
    trustDomain: state.trustDomain,
    workloads: local.workloads,
    peers: meshed
      ? state.workloads.filter((w) => w.node !== node && w.ip !== undefined).map((w) => cache?.peer(w) ?? peerForm(w))
      : [],
    services: meshed ? state.services : [],
    policies: local.policies,
    peerAuthentications: local.peerAuthentications,
    routes: local.routes,
    trafficPolicies: local.trafficPolicies,
    serviceAccounts: local.serviceAccounts,
    nodes: meshed ? sliceNodes(state, node, cache?.calledNodes(state) ?? calledNodes(state)) : [],
  });
}

export type ResourceType = 'mesh' | 'workload' | 'service' | 'endpoint' | 'authorization' | 'peerauthentication' | 'identity' | 'node' | 'route' | 'trafficpolicy';

export interface NodeResource {
  readonly type: ResourceType;
  /**
   * `namespace/name` (workload, service, authorization), `namespace/service/port/ip`
   * (endpoint), `namespace/serviceAccount` (identity), node name (node),
   * `Kind/namespace/name` (route), `config` (mesh).
   */
  readonly name: string;
  /** Content hash of the body: equal bodies, equal versions. */
  readonly version: string;
  /** Plain, frozen JSON data (the model's own object; undefined fields are left out on the wire). */
  readonly body: unknown;
  /**
   * Room for the control plane's wire encoding of this resource, filled once by its server
   * and reused for every agent that gets it (control/resource.ts, ControlResource.wire).
   */
  readonly wire?: { encoded?: Uint8Array };
}

/** A resource for a body: versioned by its content hash, with room for its wire encoding. */
export function newResource(type: ResourceType, name: string, body: object): NodeResource {
  return Object.freeze({ type, name, version: resourceVersion(body), body, wire: {} });
}

/** JSON with object keys sorted at every level and undefined fields left out. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + (value[i] === undefined ? 'null' : canonicalJson(value[i]));
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  let out = '{';
  for (const k of Object.keys(record).sort()) {
    const v = record[k];
    if (v === undefined) continue;
    out += `${out.length === 1 ? '' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
}

export function resourceVersion(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('hex').slice(0, 16);
}

export function resourceKey(type: ResourceType, name: string): string {
  return `${type}/${name}`;
}

/**
 * Remembers the resource built for each (frozen) model object, so that computing every
 * node's resources hashes each workload, service and policy once per state rather than
 * once per node. Held by the control plane; entries go with the state they came from.
 */
/** A Service on the wire: the Service without its endpoints (each endpoint is a resource of its own). */
export type ServiceBody = Omit<MeshService, 'endpoints'>;

/** One endpoint of a Service port on the wire: `endpoint/<namespace>/<service>/<port>/<ip>`. */
export interface EndpointBody {
  /** `namespace/name` of the Service. */
  readonly service: string;
  /** The Service port. */
  readonly port: number;
  readonly ip: string;
  /** The port on the endpoint. */
  readonly targetPort: number;
  readonly node: string | undefined;
  readonly workload: string | undefined;
  readonly weight: number;
}

/** The name of an endpoint resource. */
export function endpointName(service: string, port: number, ip: string): string {
  return `${service}/${port}/${ip}`;
}

/**
 * A Service as resources: the Service itself (ports, VIP) and one resource per endpoint of
 * each port, so that a pod joining or leaving a Service sends agents that endpoint, not the
 * Service's every endpoint again. Bodies are built once per MeshService object (cached).
 */
interface ServiceParts {
  readonly service: ServiceBody;
  readonly endpoints: readonly (readonly [string, EndpointBody])[];
}

/** A Service's resources, unversioned: the Service (type `service`) and each endpoint (type `endpoint`). */
export function serviceBodies(s: MeshService): { readonly service: ServiceBody; readonly endpoints: readonly (readonly [string, EndpointBody])[] } {
  return serviceParts(s);
}

function serviceParts(s: MeshService): ServiceParts {
  const { endpoints, ...service } = s;
  const out: (readonly [string, EndpointBody])[] = [];
  for (const pe of endpoints) {
    for (const e of pe.endpoints) {
      out.push([endpointName(s.key, pe.port, e.ip), Object.freeze({
        service: s.key, port: pe.port, ip: e.ip, targetPort: e.port, node: e.node, workload: e.workload, weight: e.weight,
      })]);
    }
  }
  return { service: Object.freeze(service), endpoints: out };
}

export class ResourceCache {
  readonly #resources = new WeakMap<object, NodeResource>();
  readonly #services = new WeakMap<MeshService, ServiceParts>();
  readonly #peers = new WeakMap<Workload, Workload>();
  readonly #called = new WeakMap<MeshState, CalledNodes>();

  resource(type: ResourceType, name: string, body: object): NodeResource {
    let r = this.#resources.get(body);
    if (r === undefined || r.type !== type || r.name !== name) {
      r = newResource(type, name, body);
      this.#resources.set(body, r);
    }
    return r;
  }

  /** The service's resources: the Service (keyed `service/...`) and its endpoints (`endpoint/...`). */
  serviceResources(s: MeshService): [string, NodeResource][] {
    let parts = this.#services.get(s);
    if (parts === undefined) {
      parts = serviceParts(s);
      this.#services.set(s, parts);
    }
    const out: [string, NodeResource][] = [[resourceKey('service', s.key), this.resource('service', s.key, parts.service)]];
    for (const [name, body] of parts.endpoints) out.push([resourceKey('endpoint', name), this.resource('endpoint', name, body)]);
    return out;
  }

  /** A workload as other nodes see it: labels dropped (policy selection happens at the destination). */
  peer(w: Workload): Workload {
    let p = this.#peers.get(w);
    if (p === undefined) {
      p = peerForm(w);
      this.#peers.set(w, p);
    }
    return p;
  }

  /** calledNodes(state), computed once per state rather than once per node. */
  calledNodes(state: MeshState): CalledNodes {
    let c = this.#called.get(state);
    if (c === undefined) {
      c = calledNodes(state);
      this.#called.set(state, c);
    }
    return c;
  }
}

function entry(cache: ResourceCache, type: ResourceType, name: string, body: object): [string, NodeResource] {
  return [resourceKey(type, name), cache.resource(type, name, body)];
}

/** The node's slice as resources keyed `type/name`, in a deterministic order. Bodies are the model's frozen objects. */
export function sliceResources(slice: NodeSlice, cache: ResourceCache = new ResourceCache()): Map<string, NodeResource> {
  const out = new Map<string, NodeResource>([entry(cache, 'mesh', 'config', { trustDomain: slice.trustDomain, node: slice.node })]);
  for (const w of [...slice.workloads, ...slice.peers].sort((a, b) => (a.key < b.key ? -1 : 1))) out.set(...entry(cache, 'workload', w.key, w));
  for (const s of slice.services) for (const [k, r] of cache.serviceResources(s)) out.set(k, r);
  for (const p of slice.policies) out.set(...entry(cache, 'authorization', `${p.namespace}/${p.name}`, p));
  for (const p of slice.peerAuthentications) out.set(...entry(cache, 'peerauthentication', `${p.namespace}/${p.name}`, p));
  for (const r of slice.routes) out.set(...entry(cache, 'route', routeKey(r), r));
  for (const p of slice.trafficPolicies) out.set(...entry(cache, 'trafficpolicy', trafficPolicyKey(p), p));
  for (const i of slice.serviceAccounts) out.set(...entry(cache, 'identity', `${i.namespace}/${i.serviceAccount}`, i));
  for (const n of slice.nodes) out.set(...entry(cache, 'node', n.name, n));
  return out;
}

/** Pass one ResourceCache for all nodes of a state (and across states) to hash each object once. */
export function nodeResources(state: MeshState, node: string, cache: ResourceCache = new ResourceCache()): Map<string, NodeResource> {
  return sliceResources(nodeSlice(state, node, cache), cache);
}

export interface ResourceDiff {
  /** New or changed resources, in key order. */
  readonly changed: readonly NodeResource[];
  /** Keys (`type/name`) of resources gone. */
  readonly removed: readonly string[];
}

export function diffNodeResources(previous: ReadonlyMap<string, NodeResource>, next: ReadonlyMap<string, NodeResource>): ResourceDiff {
  const changed: NodeResource[] = [];
  const removed: string[] = [];
  for (const key of [...next.keys()].sort()) {
    const r = next.get(key) as NodeResource;
    if (previous.get(key)?.version !== r.version) changed.push(r);
  }
  for (const key of [...previous.keys()].sort()) if (!next.has(key)) removed.push(key);
  return { changed, removed };
}
