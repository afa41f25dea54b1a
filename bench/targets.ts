// The goals weft measures itself against (from the issue; the absolute ones are ztunnel's
// published figures). Reported beside the numbers, never a gate.

import type { Variant } from './cluster.ts';

export interface Target {
  readonly scenario: string;
  /** Undefined: every variant of the scenario. */
  readonly variant?: Variant;
  /** Metric id; `added_<id>` for an increase over direct. */
  readonly metric: string;
  /** `max`: the value must be at most `limit`; `vsHaproxy`: weft/haproxy must be at least `limit`. */
  readonly kind: 'max' | 'vsHaproxy';
  readonly limit: number;
  readonly text: string;
}

export const TARGETS: readonly Target[] = [
  { scenario: 'fixed-rate', variant: 'cross-node', metric: 'added_p99_ms', kind: 'max', limit: 0.2, text: '≤ 0.20 ms added p99' },
  { scenario: 'fixed-rate', metric: 'vcpu_per_proxy_per_1k_rps', kind: 'max', limit: 0.06, text: '≤ 0.06 vCPU' },
  { scenario: 'fixed-rate', metric: 'rss_mib_per_proxy_per_1k_rps', kind: 'max', limit: 12, text: '≤ 12 MiB' },
  { scenario: 'idle', metric: 'kib_per_conn_per_proxy', kind: 'max', limit: 4, text: '≤ 4 KiB' },
  { scenario: 'saturation', metric: 'rps', kind: 'vsHaproxy', limit: 1.0, text: '≥ 1.0× HAProxy' },
  { scenario: 'bulk', metric: 'gbps_1', kind: 'vsHaproxy', limit: 1.0, text: '≥ 1.0× HAProxy' },
  { scenario: 'bulk', metric: 'gbps_8', kind: 'vsHaproxy', limit: 1.0, text: '≥ 1.0× HAProxy' },
];

export function targetFor(scenario: string, variant: Variant, metric: string): Target | undefined {
  return TARGETS.find((t) => t.scenario === scenario && t.metric === metric && (t.variant === undefined || t.variant === variant));
}

/** Whether `value` (a median, or for vsHaproxy the weft/haproxy ratio) meets `t`. */
export function meets(t: Target, value: number): boolean {
  return t.kind === 'max' ? value <= t.limit : value >= t.limit;
}
