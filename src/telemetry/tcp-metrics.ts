// Istio's standard TCP metrics, plus weft's duration histogram and refusal counters, on a
// Registry the app passes in. Label sets are built once per (reporter, source, destination,
// service, security) and counts are plain numbers on that object; prom-client sees them only
// when scraped (collect hooks), so a connection costs no label hashing for the counters. The
// duration histogram is fed the same way: a close appends its duration to its label set, and
// the scrape observes them (thousands of connections closed at once by a policy re-check
// then pay for prom-client's label lookup at the next scrape, not while they close).

import { Counter, Histogram, type Registry } from 'prom-client';

import { istioPeerKey, istioPeerLabels } from './istio-labels.ts';
import { RetiringSeries, type LiveWorkload } from './series-retirement.ts';
import type { ConnectionDescription } from './types.ts';

export const TCP_LABEL_NAMES = [
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app',
  'destination_service', 'destination_service_name', 'destination_service_namespace', 'destination_cluster',
  'request_protocol', 'response_flags', 'connection_security_policy',
] as const;

export type TcpLabelName = (typeof TCP_LABEL_NAMES)[number];
export type TcpLabels = Readonly<Record<TcpLabelName, string>>;

const DURATION_LABEL_NAMES = [
  'reporter', 'source_workload', 'source_workload_namespace', 'destination_workload', 'destination_workload_namespace',
  'destination_service', 'response_flags',
] as const;
type DurationLabels = Readonly<Record<(typeof DURATION_LABEL_NAMES)[number], string>>;

export const DEFAULT_DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600,
]);

/** Connections of one label set closed with one response_flags value. */
export interface ClosedStats {
  readonly labels: TcpLabels;
  readonly duration: DurationLabels;
  count: number;
  /** Durations (seconds) not yet observed by the histogram (at the next scrape, or once there are DURATIONS_HELD). */
  durations: number[];
}

/** Durations one label set holds for the histogram at most; one more observes them all at once. */
const DURATIONS_HELD = 4096;

/** The counters of one label set. */
export class PairStats {
  /** Labels with response_flags '-' (opened and bytes). */
  readonly labels: TcpLabels;
  opened = 0;
  /** Response bytes (server to client), istio_tcp_sent_bytes_total. */
  sent = 0;
  /** Request bytes (client to server), istio_tcp_received_bytes_total. */
  received = 0;
  readonly closed = new Map<string, ClosedStats>();
  /** Set once its workload is gone and the series was dropped: a late close observes no histogram. */
  dropped = false;

  constructor(labels: TcpLabels) {
    this.labels = labels;
  }

  closedWith(flags: string): ClosedStats {
    let c = this.closed.get(flags);
    if (c === undefined) {
      const labels = Object.freeze({ ...this.labels, response_flags: flags });
      const duration = Object.freeze(Object.fromEntries(DURATION_LABEL_NAMES.map((n) => [n, labels[n]])) as DurationLabels);
      c = { labels, duration, count: 0, durations: [] };
      this.closed.set(flags, c);
    }
    return c;
  }
}

export interface TcpMetricsOptions {
  readonly registry: Registry;
  /** source_cluster / destination_cluster. Default 'Kubernetes' (Istio's default cluster id). */
  readonly cluster?: string;
  readonly durationBuckets?: readonly number[];
}

export class TcpMetrics {
  readonly #cluster: string;
  readonly #pairs: RetiringSeries<PairStats>;
  readonly #beforeCollect: Array<() => void> = [];
  readonly #duration: Histogram<(typeof DURATION_LABEL_NAMES)[number]>;
  readonly #handshakes: Counter<'reason'>;
  readonly #denials: Counter<'reporter'>;
  readonly #plaintextRefused: Counter<'reason'>;
  readonly #forwardedMismatch: Counter;

  constructor(options: TcpMetricsOptions) {
    const registers = [options.registry];
    this.#cluster = options.cluster ?? 'Kubernetes';
    this.#pairs = new RetiringSeries<PairStats>((p) => {
      p.dropped = true;
      for (const c of p.closed.values()) {
        c.durations = [];
        this.#duration.remove(c.duration);
      }
    });
    const publish = (counter: Counter<TcpLabelName>, each: (p: PairStats, inc: (l: TcpLabels, v: number) => void) => void): void => {
      for (const hook of this.#beforeCollect) hook();
      counter.reset();
      const inc = (l: TcpLabels, v: number): void => counter.inc(l, v);
      for (const p of this.#pairs.values()) each(p, inc);
    };
    const opened: Counter<TcpLabelName> = new Counter({
      name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', labelNames: TCP_LABEL_NAMES, registers,
      collect: () => {
        // The first of the TCP families a scrape collects: series of gone workloads step on.
        this.#pairs.scraping();
        publish(opened, (p, inc) => inc(p.labels, p.opened));
      },
    });
    const closed: Counter<TcpLabelName> = new Counter({
      name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', labelNames: TCP_LABEL_NAMES, registers,
      collect: () => publish(closed, (p, inc) => {
        for (const c of p.closed.values()) inc(c.labels, c.count);
      }),
    });
    const sent: Counter<TcpLabelName> = new Counter({
      name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent in responses (server to client) over TCP connections',
      labelNames: TCP_LABEL_NAMES, registers,
      collect: () => publish(sent, (p, inc) => inc(p.labels, p.sent)),
    });
    const received: Counter<TcpLabelName> = new Counter({
      name: 'istio_tcp_received_bytes_total', help: 'Bytes received in requests (client to server) over TCP connections',
      labelNames: TCP_LABEL_NAMES, registers,
      collect: () => publish(received, (p, inc) => inc(p.labels, p.received)),
    });
    this.#duration = new Histogram({
      name: 'weft_tcp_connection_duration_seconds', help: 'How long proxied TCP connections lasted',
      labelNames: DURATION_LABEL_NAMES, buckets: [...(options.durationBuckets ?? DEFAULT_DURATION_BUCKETS)], registers,
      collect: () => {
        for (const p of this.#pairs.values()) for (const c of p.closed.values()) this.#observe(c);
      },
    });
    this.#handshakes = new Counter({
      name: 'weft_tunnel_handshake_failures_total', help: 'Tunnel TLS handshakes refused, by reason', labelNames: ['reason'], registers,
    });
    this.#denials = new Counter({
      name: 'weft_policy_denials_total', help: 'Connections denied by authorization policy', labelNames: ['reporter'], registers,
    });
    this.#plaintextRefused = new Counter({
      name: 'weft_inbound_plaintext_refused_total',
      help: 'Plaintext (not mesh) inbound connections the destination agent refused, by reason (mtls_required: the pod is STRICT)',
      labelNames: ['reason'], registers,
    });
    this.#forwardedMismatch = new Counter({
      name: 'weft_tunnel_forwarded_mismatch_total',
      help: 'Tunnel streams whose Forwarded source address is not a workload with the peer\'s verified identity (ignored: the peer agent\'s address was used)',
      registers,
    });
  }

  /** The mesh changed: series of workloads no longer in it go after one more scrape. Returns how many went now. */
  retain(live: LiveWorkload): number {
    return this.#pairs.retain(live);
  }

  /** Label sets held (one per reporter, source, destination, service, security). */
  get series(): number {
    return this.#pairs.size;
  }

  /** Runs before every scrape of the TCP counters (to fold in bytes of live connections). */
  beforeCollect(hook: () => void): void {
    this.#beforeCollect.push(hook);
  }

  /** The stats object of a label set, made on first use. */
  pair(d: ConnectionDescription): PairStats {
    const key = `${istioPeerKey(d)}\u0001${d.security}`;
    let p = this.#pairs.get(key);
    if (p === undefined) {
      p = new PairStats(Object.freeze({
        ...istioPeerLabels(d, this.#cluster),
        request_protocol: 'tcp',
        response_flags: '-',
        connection_security_policy: d.security,
      }));
      this.#pairs.set(key, p);
    }
    return p;
  }

  closed(p: PairStats, flags: string, seconds: number): void {
    const c = p.closedWith(flags);
    c.count += 1;
    if (p.dropped) return;
    c.durations.push(seconds);
    if (c.durations.length >= DURATIONS_HELD) this.#observe(c);
  }

  #observe(c: ClosedStats): void {
    if (c.durations.length === 0) return;
    const durations = c.durations;
    c.durations = [];
    for (const seconds of durations) this.#duration.observe(c.duration, seconds);
  }

  handshakeFailed(reason: string): void {
    this.#handshakes.inc({ reason });
  }

  denied(reporter: string): void {
    this.#denials.inc({ reporter });
  }

  plaintextRefused(reason: string): void {
    this.#plaintextRefused.inc({ reason });
  }

  forwardedMismatch(): void {
    this.#forwardedMismatch.inc();
  }
}
