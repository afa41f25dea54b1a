// The security view, pure: which namespaces and workloads are enrolled and their
// PeerAuthentication mode, plaintext edges into enrolled workloads, denials, certificate
// expiry per identity (as the agents serving them report it) and the CA's revocations.

import type { Workload } from '../model/types.ts';
import type { MeshRates } from './mesh-rates.ts';
import type { Topology, TopologyEdge, TopologyState } from './topology.ts';

export interface SecurityInputs {
  /** The PeerAuthentication mode that applies to a workload (STRICT, PERMISSIVE, DISABLE), when the model has one. */
  readonly peerAuthenticationMode?: (w: Workload) => string | undefined;
  /** Serials the CA revoked, with what it knows of them. */
  readonly revoked: readonly RevokedCertificate[];
  /** Now, epoch ms. */
  readonly now: number;
}

export interface RevokedCertificate {
  readonly serial: string;
  readonly identity?: string;
  readonly node?: string;
  /** Epoch ms. */
  readonly revokedAt?: number;
}

export interface NamespaceSecurity {
  readonly namespace: string;
  readonly workloads: number;
  readonly enrolled: number;
}

export interface WorkloadSecurity {
  readonly namespace: string;
  readonly name: string;
  readonly node: string | undefined;
  readonly identity: string;
  readonly enrolled: boolean;
  /** STRICT / PERMISSIVE / DISABLE; PERMISSIVE (the default) when no policy names one. */
  readonly mode: string;
  readonly modeFromPolicy: boolean;
}

export interface CertificateStatus {
  readonly identity: string;
  /** The agent serving it. */
  readonly instance: string;
  /** Epoch ms. */
  readonly expiresAt: number;
  readonly secondsLeft: number;
  /** Requests for it failed in the last window. */
  readonly renewalFailing: boolean;
}

export interface DenialCount {
  readonly instance: string;
  readonly reporter: string;
  readonly perSecond: number;
  readonly total: number | undefined;
}

export interface SecurityView {
  readonly namespaces: readonly NamespaceSecurity[];
  readonly workloads: readonly WorkloadSecurity[];
  readonly plaintextEdges: readonly TopologyEdge[];
  readonly nodeLocalPlaintextEdges: readonly TopologyEdge[];
  readonly deniedEdges: readonly { readonly from: string; readonly to: string; readonly perSecond: number; readonly total: number | undefined }[];
  readonly denials: readonly DenialCount[];
  readonly certificates: readonly CertificateStatus[];
  readonly revoked: readonly RevokedCertificate[];
}

export const DEFAULT_PEER_AUTHENTICATION = 'PERMISSIVE';

export function securityView(state: TopologyState, rates: MeshRates, graph: Topology, inputs: SecurityInputs): SecurityView {
  const namespaces = new Map<string, { workloads: number; enrolled: number }>();
  const workloads: WorkloadSecurity[] = [];
  for (const w of state.workloads) {
    const n = namespaces.get(w.namespace) ?? { workloads: 0, enrolled: 0 };
    n.workloads += 1;
    if (w.enrolled) n.enrolled += 1;
    namespaces.set(w.namespace, n);
    const mode = inputs.peerAuthenticationMode?.(w);
    workloads.push({
      namespace: w.namespace, name: w.name, node: w.node, identity: w.identity, enrolled: w.enrolled,
      mode: mode ?? DEFAULT_PEER_AUTHENTICATION, modeFromPolicy: mode !== undefined,
    });
  }
  const failing = new Set(rates.certificateFailures.filter((r) => r.rate > 0).map((r) => `${r.labels.instance}\u0001${r.labels.identity}`));
  const certificates = rates.certificateExpiry.map((s): CertificateStatus => {
    const instance = s.labels.instance ?? '';
    const identity = s.labels.identity ?? '';
    return {
      identity, instance, expiresAt: s.value * 1000, secondsLeft: Math.round(s.value - inputs.now / 1000),
      renewalFailing: failing.has(`${instance}\u0001${identity}`),
    };
  }).sort((a, b) => a.secondsLeft - b.secondsLeft);
  const denied = new Map<string, { from: string; to: string; perSecond: number; total: number | undefined }>();
  for (const r of rates.closed) {
    if (r.labels.response_flags !== 'DENY') continue;
    const from = `${r.labels.source_workload_namespace ?? '?'}/${r.labels.source_workload ?? '?'}`;
    const to = `${r.labels.destination_workload_namespace ?? '?'}/${r.labels.destination_workload ?? '?'}`;
    const key = `${r.labels.reporter ?? ''} ${from} ${to}`;
    const d = denied.get(key) ?? { from, to, perSecond: 0, total: undefined };
    d.perSecond += r.rate;
    if (r.total !== undefined) d.total = (d.total ?? 0) + r.total;
    denied.set(key, d);
  }
  return {
    namespaces: [...namespaces].map(([namespace, n]) => ({ namespace, ...n })).sort((a, b) => a.namespace.localeCompare(b.namespace)),
    workloads: workloads.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`)),
    plaintextEdges: graph.edges.filter((e) => e.plaintextIntoEnrolled),
    nodeLocalPlaintextEdges: graph.edges.filter((e) => e.nodeLocal),
    deniedEdges: [...denied.values()],
    denials: rates.denials.map((r) => ({ instance: r.labels.instance ?? '', reporter: r.labels.reporter ?? '', perSecond: r.rate, total: r.total })),
    certificates,
    revoked: inputs.revoked,
  };
}
