// What the dashboard knows about traffic: per-second rates of Istio's metrics grouped by the
// labels a graph edge needs, gauges of certificate expiry, and counters of refusals. Two
// sources fill it: Prometheus (rate() over its own scrapes, prometheus-source.ts) or the
// agents directly (two scrapes' difference, agent-source.ts, computed here). Pure.

import type { Labels, Sample } from './samples.ts';

/** Labels an edge is keyed by (Istio's, as the source agent reports them). */
export const EDGE_LABELS = [
  'reporter', 'source_workload', 'source_workload_namespace', 'destination_service', 'destination_workload',
  'destination_workload_namespace', 'connection_security_policy',
] as const;

export interface Rate {
  readonly labels: Labels;
  /** Per second over the window. */
  readonly rate: number;
  /** The counter's value at the end of the window (since the agent started); undefined from Prometheus. */
  readonly total?: number;
}

export interface MeshRates {
  /** When these were taken (epoch ms) and over how many seconds the rates run. */
  readonly at: number;
  readonly windowSeconds: number;
  readonly source: 'prometheus' | 'agents';
  /** istio_tcp_connections_opened_total by EDGE_LABELS. */
  readonly opened: readonly Rate[];
  /** istio_tcp_connections_closed_total by EDGE_LABELS + response_flags. */
  readonly closed: readonly Rate[];
  /** istio_tcp_sent_bytes_total + istio_tcp_received_bytes_total by EDGE_LABELS. */
  readonly bytes: readonly Rate[];
  /** weft_tcp_connection_duration_seconds_bucket by reporter, workloads, service and le. */
  readonly durationBuckets: readonly Rate[];
  /** istio_requests_total by EDGE_LABELS + response_code (HTTP; empty until the L7 path reports). */
  readonly requests: readonly Rate[];
  /** istio_request_duration_milliseconds_bucket by EDGE_LABELS + le. */
  readonly requestDurationBuckets: readonly Rate[];
  /** weft_policy_denials_total, weft_tunnel_handshake_failures_total, certificate failures: by instance. */
  readonly denials: readonly Rate[];
  readonly handshakeFailures: readonly Rate[];
  readonly certificateFailures: readonly Rate[];
  /** weft_agent_certificate_expiry_timestamp_seconds by instance and identity (value = Unix seconds). */
  readonly certificateExpiry: readonly Sample[];
  /** weft_agent_control_connected by instance. */
  readonly controlConnected: readonly Sample[];
  /** Agents that could not be read, by instance, with why. */
  readonly unreachable: readonly { readonly instance: string; readonly error: string }[];
  /** Why the preferred source failed, when this fell back to another. */
  readonly note?: string;
}

/** Which families of an agent's scrape go where, and how they are grouped. */
export const FAMILIES = {
  opened: { names: ['istio_tcp_connections_opened_total'], by: EDGE_LABELS },
  closed: { names: ['istio_tcp_connections_closed_total'], by: [...EDGE_LABELS, 'response_flags'] },
  bytes: { names: ['istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total'], by: EDGE_LABELS },
  durationBuckets: {
    names: ['weft_tcp_connection_duration_seconds_bucket'],
    by: ['reporter', 'source_workload', 'source_workload_namespace', 'destination_service', 'destination_workload', 'destination_workload_namespace', 'le'],
  },
  requests: { names: ['istio_requests_total'], by: [...EDGE_LABELS, 'response_code'] },
  requestDurationBuckets: { names: ['istio_request_duration_milliseconds_bucket'], by: [...EDGE_LABELS, 'le'] },
  denials: { names: ['weft_policy_denials_total'], by: ['instance'] },
  handshakeFailures: { names: ['weft_tunnel_handshake_failures_total'], by: ['instance', 'reason'] },
  certificateFailures: { names: ['weft_agent_certificate_requests_total'], by: ['instance', 'identity'], only: { result: 'failure' } },
} as const satisfies Record<string, { names: readonly string[]; by: readonly string[]; only?: Labels }>;

export type CounterFamily = keyof typeof FAMILIES;

const GAUGES = {
  certificateExpiry: 'weft_agent_certificate_expiry_timestamp_seconds',
  controlConnected: 'weft_agent_control_connected',
} as const;

/** One agent's scrape, grouped: family -> label key -> summed value. */
export interface GroupedScrape {
  readonly at: number;
  readonly counters: Readonly<Record<CounterFamily, ReadonlyMap<string, { labels: Labels; value: number }>>>;
  readonly gauges: Readonly<Record<keyof typeof GAUGES, readonly Sample[]>>;
}

function keyOf(labels: Labels, by: readonly string[]): string {
  return by.map((l) => labels[l] ?? '').join('\u0001');
}

/** Groups one agent's samples (instance = the agent's name) the way MeshRates needs them. */
export function groupScrape(samples: readonly Sample[], instance: string, at: number): GroupedScrape {
  const counters = {} as Record<CounterFamily, Map<string, { labels: Labels; value: number }>>;
  const byName = new Map<string, CounterFamily>();
  for (const [family, spec] of Object.entries(FAMILIES) as [CounterFamily, (typeof FAMILIES)[CounterFamily]][]) {
    counters[family] = new Map();
    for (const n of spec.names) byName.set(n, family);
  }
  const gauges = { certificateExpiry: [] as Sample[], controlConnected: [] as Sample[] };
  for (const s of samples) {
    const family = byName.get(s.name);
    if (family !== undefined) {
      const spec: { by: readonly string[]; only?: Labels } = FAMILIES[family];
      if (spec.only !== undefined && Object.entries(spec.only).some(([k, v]) => s.labels[k] !== v)) continue;
      const labels: Labels = { ...s.labels, instance };
      const key = keyOf(labels, spec.by);
      const map = counters[family];
      const had = map.get(key);
      if (had === undefined) map.set(key, { labels: Object.fromEntries(spec.by.map((l) => [l, labels[l] ?? ''])), value: s.value });
      else had.value += s.value;
      continue;
    }
    if (s.name === GAUGES.certificateExpiry) gauges.certificateExpiry.push({ ...s, labels: { ...s.labels, instance } });
    else if (s.name === GAUGES.controlConnected) gauges.controlConnected.push({ ...s, labels: { ...s.labels, instance } });
  }
  return { at, counters, gauges };
}

/**
 * Rates between two scrapes of every agent (by instance). A counter that went down (the agent
 * restarted) counts from zero, as Prometheus's rate() does; an agent seen once has rate 0.
 */
export function ratesBetween(
  previous: ReadonlyMap<string, GroupedScrape>, current: ReadonlyMap<string, GroupedScrape>,
  unreachable: MeshRates['unreachable'], at: number,
): MeshRates {
  const lists = {} as Record<CounterFamily, Rate[]>;
  for (const f of Object.keys(FAMILIES) as CounterFamily[]) lists[f] = [];
  let window = 0;
  const certificateExpiry: Sample[] = [];
  const controlConnected: Sample[] = [];
  for (const [instance, cur] of current) {
    const prev = previous.get(instance);
    const seconds = prev === undefined ? 0 : (cur.at - prev.at) / 1000;
    window = Math.max(window, seconds);
    for (const f of Object.keys(FAMILIES) as CounterFamily[]) {
      for (const [key, c] of cur.counters[f]) {
        const before = prev?.counters[f].get(key)?.value ?? 0;
        const delta = prev === undefined ? 0 : c.value >= before ? c.value - before : c.value;
        lists[f].push({ labels: c.labels, rate: seconds > 0 ? delta / seconds : 0, total: c.value });
      }
    }
    certificateExpiry.push(...cur.gauges.certificateExpiry);
    controlConnected.push(...cur.gauges.controlConnected);
  }
  return { at, windowSeconds: window, source: 'agents', ...lists, certificateExpiry, controlConnected, unreachable };
}

/** Sums rates whose labels agree on `by` (other labels dropped). */
export function sumBy(rates: readonly Rate[], by: readonly string[]): Rate[] {
  const out = new Map<string, { labels: Labels; rate: number; total: number | undefined }>();
  for (const r of rates) {
    const key = keyOf(r.labels, by);
    const had = out.get(key);
    if (had === undefined) out.set(key, { labels: Object.fromEntries(by.map((l) => [l, r.labels[l] ?? ''])), rate: r.rate, total: r.total });
    else {
      had.rate += r.rate;
      had.total = had.total === undefined || r.total === undefined ? undefined : had.total + r.total;
    }
  }
  return [...out.values()];
}

/**
 * The q-quantile of a histogram from its cumulative buckets' rates (as PromQL's
 * histogram_quantile, linear within a bucket); undefined without observations.
 */
export function histogramQuantile(q: number, buckets: readonly { le: number; rate: number }[]): number | undefined {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted.at(-1)?.rate ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let lowerLe = 0;
  let lowerCount = 0;
  for (const b of sorted) {
    if (b.rate >= rank) {
      if (b.le === Number.POSITIVE_INFINITY) return lowerLe;
      const inBucket = b.rate - lowerCount;
      return inBucket <= 0 ? b.le : lowerLe + (b.le - lowerLe) * ((rank - lowerCount) / inBucket);
    }
    lowerLe = b.le;
    lowerCount = b.rate;
  }
  return lowerLe;
}
