// The peer half of Istio's standard metric labels (reporter, source_*, destination_*,
// destination_service*): the same for the TCP and the request metrics, so both read alike in
// Istio's and Kiali's dashboards. Pure; each metric adds its own protocol/code/flags labels.

import type { PeerRef, ServiceRef } from './types.ts';

const UNKNOWN = 'unknown';

export interface PeerLabelsInput {
  readonly reporter: 'source' | 'destination';
  readonly source: PeerRef;
  readonly destination: PeerRef;
  readonly service?: ServiceRef | undefined;
}

export interface IstioPeerLabels {
  readonly reporter: string;
  readonly source_workload: string;
  readonly source_workload_namespace: string;
  readonly source_principal: string;
  readonly source_app: string;
  readonly source_cluster: string;
  readonly destination_workload: string;
  readonly destination_workload_namespace: string;
  readonly destination_principal: string;
  readonly destination_app: string;
  readonly destination_service: string;
  readonly destination_service_name: string;
  readonly destination_service_namespace: string;
  readonly destination_cluster: string;
}

const u = (x: string | undefined): string => x ?? '';

/** The lookup key of the peer labels (series are cached by it, so it must tell every label set apart). */
export function istioPeerKey(d: PeerLabelsInput): string {
  const s = d.source;
  const t = d.destination;
  const v = d.service;
  // A template, not an array join (once per request and connection); the same key as the join was.
  return `${d.reporter}\u0001${u(s.workload)}\u0001${u(s.namespace)}\u0001${u(s.principal)}\u0001${u(s.app)}\u0001${u(t.workload)}\u0001${u(t.namespace)}\u0001${u(t.principal)}\u0001${u(t.app)}\u0001${u(v?.host)}\u0001${u(v?.name)}\u0001${u(v?.namespace)}`;
}

/** Istio's peer labels; what is not known is `unknown`, as Istio writes it. */
export function istioPeerLabels(d: PeerLabelsInput, cluster: string): IstioPeerLabels {
  const s = d.source;
  const t = d.destination;
  const v = d.service;
  return {
    reporter: d.reporter,
    source_workload: s.workload ?? UNKNOWN,
    source_workload_namespace: s.namespace ?? UNKNOWN,
    source_principal: s.principal ?? UNKNOWN,
    source_app: s.app ?? UNKNOWN,
    source_cluster: cluster,
    destination_workload: t.workload ?? UNKNOWN,
    destination_workload_namespace: t.namespace ?? UNKNOWN,
    destination_principal: t.principal ?? UNKNOWN,
    destination_app: t.app ?? UNKNOWN,
    destination_service: v?.host ?? UNKNOWN,
    destination_service_name: v?.name ?? UNKNOWN,
    destination_service_namespace: v?.namespace ?? UNKNOWN,
    destination_cluster: cluster,
  };
}
