// weft.dev/v1alpha1 traffic policies, parsed: DestinationPolicy (circuit breaking and outlier
// detection for calls to a Service, Istio DestinationRule trafficPolicy's fields),
// RateLimitPolicy (token buckets at the destination, per Service or workload selector) and
// FaultInjection (delays and aborts an HTTPRoute's ExtensionRef filter names). Plain frozen data.

import type { Labels } from './types.ts';

/** A Service in the policy's own namespace. */
export interface ServiceTarget {
  readonly name: string;
}

export interface DestinationPolicyObject {
  readonly kind: 'DestinationPolicy';
  readonly name: string;
  readonly namespace: string;
  readonly targetRef: ServiceTarget;
  readonly connectionPool: {
    /** Connections to the Service from one agent at once; undefined: no limit. */
    readonly maxConnections?: number;
    /** Requests waiting for or holding an upstream connection at once; over it: 503 UO. */
    readonly maxPendingRequests?: number;
    /** Requests one upstream connection carries before it is retired; undefined or 0: no limit. */
    readonly maxRequestsPerConnection?: number;
  };
  /** Absent: no outlier detection from this policy. */
  readonly outlierDetection?: {
    readonly consecutive5xxErrors: number;
    readonly intervalMs: number;
    readonly baseEjectionMs: number;
    readonly maxEjectionPercent: number;
  };
  /** Linkerd's retry budget for calls to the Service; absent: the default (20% of requests plus 10 retries/s over 10 s). */
  readonly retryBudget?: {
    readonly retryRatio: number;
    readonly minRetriesPerSecond: number;
    readonly ttlMs: number;
  };
}

export interface RateLimit {
  readonly requestsPerSecond: number;
  /** Bucket size; default one second's worth. */
  readonly burst: number;
}

export interface RateLimitOverride extends RateLimit {
  /** SPIFFE id of the source this override is for. */
  readonly principal: string;
}

export interface RateLimitPolicyObject {
  readonly kind: 'RateLimitPolicy';
  readonly name: string;
  readonly namespace: string;
  /** Exactly one of targetRef and selector. */
  readonly targetRef?: ServiceTarget;
  readonly selector?: Labels;
  /** One bucket for every request to the target. */
  readonly total?: RateLimit;
  /** One bucket per source identity; every plaintext source shares one. */
  readonly perSource?: RateLimit;
  readonly overrides: readonly RateLimitOverride[];
  /** L4: new connections per second. */
  readonly connections?: RateLimit;
  /** Shadow: count what would be refused, refuse nothing. */
  readonly mode: 'Enforce' | 'Shadow';
}

export interface FaultInjectionObject {
  readonly kind: 'FaultInjection';
  readonly name: string;
  readonly namespace: string;
  readonly delay?: { readonly fixedDelayMs: number; readonly percentage: number };
  readonly abort?: { readonly httpStatus: number; readonly grpcStatus?: number; readonly percentage: number };
}

export type TrafficPolicyObject = DestinationPolicyObject | RateLimitPolicyObject | FaultInjectionObject;
export type TrafficPolicyKind = TrafficPolicyObject['kind'];

export const TRAFFIC_POLICY_KINDS: readonly TrafficPolicyKind[] = Object.freeze(['DestinationPolicy', 'RateLimitPolicy', 'FaultInjection']);

/** `Kind/namespace/name` */
export function trafficPolicyKey(p: TrafficPolicyObject): string {
  return `${p.kind}/${p.namespace}/${p.name}`;
}

/** Sorted by `Kind/namespace/name`, frozen. */
export function sortTrafficPolicies(ps: readonly TrafficPolicyObject[]): readonly TrafficPolicyObject[] {
  return Object.freeze([...ps].sort((a, b) => (trafficPolicyKey(a) < trafficPolicyKey(b) ? -1 : trafficPolicyKey(a) > trafficPolicyKey(b) ? 1 : 0)));
}
