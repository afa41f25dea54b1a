// MeshState: the mesh with pure lookups. Built in two phases: parseObjects validates every
// object aside (one bad object rejects only itself), then buildMeshState resolves and
// indexes once (into a MeshIndex, which nobody changes afterwards; the control plane's
// live resolver keeps its own one up to date instead). Conflicts (two services on one VIP,
// two pods on one IP) resolve deterministically to the first by `namespace/name`;
// crossCheck reports them.

import type { TrafficPolicyObject } from './traffic-policy-types.ts';
import type {
  AuthorizationPolicyObject, Endpoint, MeshNode, MeshObjects, MeshService, PeerAuthenticationObject, ServicePort, Workload,
} from './types.ts';
import type { MtlsDecision } from './peer-authentication.ts';
import { DEFAULT_TRUST_DOMAIN } from './types.ts';
import { resolveMesh, type MeshContent } from './resolve.ts';
import type { PolicyView } from './authorize.ts';
import { MeshIndex } from './mesh-index.ts';
import { isTrustDomain } from './spiffe.ts';
import { modelError, ModelErrors } from './errors.ts';
import type { RouteObject } from './route-types.ts';
import type { RouteTable } from './route-table.ts';

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
  /** PeerAuthentications, sorted by `namespace/name`. */
  readonly peerAuthentications: readonly PeerAuthenticationObject[];
  /** The workload's mTLS mode (model/peer-authentication.ts), computed once per workload object. */
  mtlsModeFor(workload: Workload): MtlsDecision;
  /** HTTPRoutes and GRPCRoutes, sorted by `Kind/namespace/name`. */
  readonly routes: readonly RouteObject[];
  /**
   * The routes of a Service port, compiled once per snapshot, for decideRoute (route-match.ts);
   * a table with no route attached when none is (or the port is unknown to the Service).
   */
  routeTable(service: MeshService, port: number): RouteTable;
  /** DestinationPolicies, RateLimitPolicies and FaultInjections, sorted by `Kind/namespace/name`. */
  readonly trafficPolicies: readonly TrafficPolicyObject[];
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
  return indexContent(resolveMesh(objects, checkTrustDomain(options.trustDomain ?? DEFAULT_TRUST_DOMAIN)));
}

/** Indexes already-resolved content (e.g. what an agent received as node resources). */
export function meshStateFromContent(content: MeshContent): MeshState {
  checkTrustDomain(content.trustDomain);
  return indexContent(content);
}

function indexContent(content: MeshContent): MeshIndex {
  const index = new MeshIndex(content.trustDomain);
  for (const w of content.workloads) index.putWorkload(w);
  for (const s of content.services) index.putService(s);
  for (const n of content.nodes) if (index.node(n.name) === undefined) index.putNode(n);
  index.setPolicies(content.policies);
  index.setRoutes(content.routes ?? []);
  index.setPeerAuthentications(content.peerAuthentications ?? []);
  index.setTrafficPolicies(content.trafficPolicies ?? []);
  return index.freeze();
}

/** Checks a trust domain before a live resolver is built with it. */
export function checkedTrustDomain(td: string | undefined): string {
  return checkTrustDomain(td ?? DEFAULT_TRUST_DOMAIN);
}

export const EMPTY_OBJECTS: MeshObjects = Object.freeze({
  namespaces: [], pods: [], services: [], endpointSlices: [], serviceAccounts: [], policies: [], nodes: [], routes: [], peerAuthentications: [], trafficPolicies: [],
});
