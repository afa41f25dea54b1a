// The goals weft measures itself against (from the issue; the absolute ones are ztunnel's
// published figures). Reported beside the numbers, never a gate.

import type { Variant } from './cluster.ts';

export interface Target {
  readonly scenario: string;
  /** Undefined: every variant of the scenario. */
  readonly variant?: Variant;
  /** Metric id; `added_<id>` for an increase over direct. */
  readonly metric: string;
  /**
   * `max`: the value must be at most `limit`; `vsHaproxy`: weft/haproxy must be at least
   * `limit`; `atMostHaproxy`: weft/haproxy must be at most `limit` (a cost).
   */
  readonly kind: 'max' | 'vsHaproxy' | 'atMostHaproxy';
  readonly limit: number;
  readonly text: string;
}

export const TARGETS: readonly Target[] = [
  { scenario: 'fixed-rate', variant: 'cross-node', metric: 'added_p99_ms', kind: 'max', limit: 0.2, text: '≤ 0.20 ms added p99' },
  { scenario: 'fixed-rate', metric: 'vcpu_per_proxy_per_1k_rps', kind: 'max', limit: 0.06, text: '≤ 0.06 vCPU' },
  { scenario: 'fixed-rate', metric: 'rss_mib_per_proxy_per_1k_rps', kind: 'max', limit: 12, text: '≤ 12 MiB' },
  { scenario: 'idle', metric: 'kib_per_conn_per_proxy', kind: 'max', limit: 4, text: '≤ 4 KiB' },
  { scenario: 'saturation', metric: 'rps', kind: 'vsHaproxy', limit: 1.0, text: '≥ 1.0× HAProxy' },
  { scenario: 'http1', metric: 'rps', kind: 'vsHaproxy', limit: 1.0, text: '≥ 1.0× HAProxy' },
  { scenario: 'http1', metric: 'cpu_us_per_req', kind: 'atMostHaproxy', limit: 1.2, text: '≤ 1.2× HAProxy' },
  { scenario: 'h2', metric: 'rps', kind: 'vsHaproxy', limit: 1.0, text: '≥ 1.0× HAProxy' },
  { scenario: 'h2', metric: 'cpu_us_per_req', kind: 'atMostHaproxy', limit: 1.2, text: '≤ 1.2× HAProxy' },
  { scenario: 'bulk', metric: 'gbps_1', kind: 'vsHaproxy', limit: 1.0, text: '≥ 1.0× HAProxy' },
  { scenario: 'bulk', metric: 'gbps_8', kind: 'vsHaproxy', limit: 1.0, text: '≥ 1.0× HAProxy' },
];

export function targetFor(scenario: string, variant: Variant, metric: string): Target | undefined {
  return TARGETS.find((t) => t.scenario === scenario && t.metric === metric && (t.variant === undefined || t.variant === variant));
}

/** Whether the target compares weft with HAProxy (the value is the weft/haproxy ratio). */
export function relative(t: Pick<Target, 'kind'>): boolean {
  return t.kind !== 'max';
}

/** Whether `value` (a median, or for the relative kinds the weft/haproxy ratio) meets `t`. */
export function meets(t: Target, value: number): boolean {
  return t.kind === 'vsHaproxy' ? value >= t.limit : value <= t.limit;
}
