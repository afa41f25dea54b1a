// What one node's agent needs, and the versioned resource form the control plane pushes.
// A node with no enrolled workload captures nothing, so it gets no services or peers.
// Resource versions are content hashes of canonical JSON, so the same content always has
// the same version, whichever control-plane replica computed it, and a push carries only
// the resources whose version changed.

import { createHash } from 'node:crypto';
import type { AuthorizationPolicyObject, MeshService, Workload } from './types.ts';
import type { MeshState } from './state.ts';

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
  /** Service accounts of the node's enrolled workloads: the certificates its agent may ask for. */
  readonly serviceAccounts: readonly NodeIdentity[];
}

export function nodeSlice(state: MeshState, node: string): NodeSlice {
  const local = state.workloadsOnNode(node);
  const enrolled = local.filter((w) => w.enrolled);
  const meshed = enrolled.length > 0;
  const policies = new Map<string, AuthorizationPolicyObject>();
  const accounts = new Map<string, NodeIdentity>();
  for (const w of enrolled) {
    const p = state.policiesFor(w);
    for (const c of [...p.deny, ...p.allow, ...p.dryRunDeny, ...p.dryRunAllow]) policies.set(c.key, c.policy);
    accounts.set(`${w.namespace}/${w.serviceAccount}`, Object.freeze({ namespace: w.namespace, serviceAccount: w.serviceAccount, identity: w.identity }));
  }
  const sortedValues = <T>(m: Map<string, T>): T[] => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, v]) => v);
  return Object.freeze({
    node,
    trustDomain: state.trustDomain,
    workloads: local,
    peers: meshed ? state.workloads.filter((w) => w.node !== node && w.ip !== undefined).map((w) => Object.freeze({ ...w, labels: {} })) : [],
    services: meshed ? state.services : [],
    policies: sortedValues(policies),
    serviceAccounts: sortedValues(accounts),
  });
}

export type ResourceType = 'mesh' | 'workload' | 'service' | 'authorization' | 'identity';

export interface NodeResource {
  readonly type: ResourceType;
  /** `namespace/name` (workload, service, authorization), `namespace/serviceAccount` (identity), `config` (mesh). */
  readonly name: string;
  /** Content hash of the body: equal bodies, equal versions. */
  readonly version: string;
  /** Plain JSON data. */
  readonly body: unknown;
}

/** JSON with object keys sorted at every level and undefined fields left out. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : 1));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

export function resourceVersion(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('hex').slice(0, 16);
}

export function resourceKey(type: ResourceType, name: string): string {
  return `${type}/${name}`;
}

function resource(type: ResourceType, name: string, body: unknown): [string, NodeResource] {
  // Round-trip through canonical JSON so the body is plain data, exactly what the hash covers.
  const plain: unknown = JSON.parse(canonicalJson(body));
  return [resourceKey(type, name), Object.freeze({ type, name, version: resourceVersion(plain), body: plain })];
}

/** The node's slice as resources keyed `type/name`, in a deterministic order. */
export function sliceResources(slice: NodeSlice): Map<string, NodeResource> {
  const out = new Map<string, NodeResource>([resource('mesh', 'config', { trustDomain: slice.trustDomain, node: slice.node })]);
  for (const w of [...slice.workloads, ...slice.peers].sort((a, b) => (a.key < b.key ? -1 : 1))) out.set(...resource('workload', w.key, w));
  for (const s of slice.services) out.set(...resource('service', s.key, s));
  for (const p of slice.policies) out.set(...resource('authorization', `${p.namespace}/${p.name}`, p));
  for (const i of slice.serviceAccounts) out.set(...resource('identity', `${i.namespace}/${i.serviceAccount}`, i));
  return out;
}

export function nodeResources(state: MeshState, node: string): Map<string, NodeResource> {
  return sliceResources(nodeSlice(state, node));
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
