// Istio's standard request metrics (istio_requests_total, istio_request_duration_milliseconds,
// istio_request_bytes, istio_response_bytes) with Istio's label names and default buckets.
// Counts live in plain arrays per label set, built once per (reporter, source, destination,
// service, protocol, code, grpc status, flags, security); the registry sees them only when
// scraped (custom collectors in prom-client's metric shape, so worker registries aggregate
// like any other), so a request costs one key join and a few increments, no label hashing.

import type { MetricObjectWithValues, MetricValueWithName, Registry } from 'prom-client';

import { istioPeerKey, istioPeerLabels } from './istio-labels.ts';
import type { RequestLabelsInput } from './types.ts';
import { RetiringSeries, type LiveWorkload } from './series-retirement.ts';

export const REQUEST_LABEL_NAMES = [
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app',
  'destination_service', 'destination_service_name', 'destination_service_namespace', 'destination_cluster',
  'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy',
] as const;

export type RequestLabelName = (typeof REQUEST_LABEL_NAMES)[number];
export type RequestLabels = Readonly<Record<RequestLabelName, string>>;

/** Istio's default duration buckets, milliseconds. */
export const ISTIO_DURATION_BUCKETS_MS: readonly number[] = Object.freeze([
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
]);

/** Istio's default size buckets: exponential from 1 byte, factor 10, 8 buckets. */
export const ISTIO_SIZE_BUCKETS: readonly number[] = Object.freeze([1, 10, 100, 1000, 10000, 100000, 1000000, 10000000]);

/** One histogram's state for one label set. */
class Buckets {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(n: number) {
    this.counts = new Float64Array(n);
  }

  observe(bounds: readonly number[], v: number): void {
    this.sum += v;
    this.count += 1;
    for (let i = 0; i < bounds.length; i++) {
      if (v <= (bounds[i])) {
        this.counts[i] = (this.counts[i] ?? 0) + 1;
        return;
      }
    }
  }
}

/** The counters of one label set. */
export class RequestSeries {
  readonly labels: RequestLabels;
  requests = 0;
  readonly duration: Buckets;
  readonly requestBytes: Buckets;
  readonly responseBytes: Buckets;

  constructor(labels: RequestLabels, durationBuckets: number, sizeBuckets: number) {
    this.labels = labels;
    this.duration = new Buckets(durationBuckets);
    this.requestBytes = new Buckets(sizeBuckets);
    this.responseBytes = new Buckets(sizeBuckets);
  }
}

function histogramValues(name: string, bounds: readonly number[], series: Iterable<RequestSeries>, pick: (s: RequestSeries) => Buckets): MetricValueWithName<string>[] {
  const out: MetricValueWithName<string>[] = [];
  for (const s of series) {
    const b = pick(s);
    let cumulative = 0;
    for (let i = 0; i < bounds.length; i++) {
      cumulative += b.counts[i] ?? 0;
      out.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le: bounds[i] }, value: cumulative });
    }
    out.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: b.count });
    out.push({ metricName: `${name}_sum`, labels: s.labels, value: b.sum });
    out.push({ metricName: `${name}_count`, labels: s.labels, value: b.count });
  }
  return out;
}

export interface RequestMetricsOptions {
  readonly registry: Registry;
  /** source_cluster / destination_cluster. Default 'Kubernetes'. */
  readonly cluster?: string;
}

export class RequestMetrics {
  readonly #cluster: string;
  readonly #series = new RetiringSeries<RequestSeries>();

  constructor(options: RequestMetricsOptions) {
    this.#cluster = options.cluster ?? 'Kubernetes';
    const all = (): Iterable<RequestSeries> => this.#series.values();
    const collector = (name: string, help: string, type: 'counter' | 'histogram', values: () => MetricValueWithName<string>[]) => ({
      name, help, type, aggregator: 'sum' as const,
      // Plain data only: worker threads post this to the main thread (structured clone, no functions).
      get: (): Promise<MetricObjectWithValues<MetricValueWithName<string>>> => Promise.resolve({
        name, help, type, aggregator: 'sum', values: values(),
      } as unknown as MetricObjectWithValues<MetricValueWithName<string>>),
      reset: (): void => undefined,
    });
    const register = (m: ReturnType<typeof collector>): void => {
      // prom-client calls get() and reads name/help/type/aggregator; these collectors implement exactly that.
      options.registry.registerMetric(m as unknown as Parameters<Registry['registerMetric']>[0]);
    };
    register(collector('istio_requests_total', 'Requests proxied, by response', 'counter', () => {
      // The first of these families a scrape reads: series of gone workloads step on.
      this.#series.scraping();
      return [...all()].map((s) => ({ labels: s.labels, value: s.requests }));
    }));
    register(collector('istio_request_duration_milliseconds', 'Request duration', 'histogram',
      () => histogramValues('istio_request_duration_milliseconds', ISTIO_DURATION_BUCKETS_MS, all(), (s) => s.duration)));
    register(collector('istio_request_bytes', 'Request body sizes', 'histogram',
      () => histogramValues('istio_request_bytes', ISTIO_SIZE_BUCKETS, all(), (s) => s.requestBytes)));
    register(collector('istio_response_bytes', 'Response body sizes', 'histogram',
      () => histogramValues('istio_response_bytes', ISTIO_SIZE_BUCKETS, all(), (s) => s.responseBytes)));
  }

  /** The mesh changed: series of workloads no longer in it go after one more scrape. Returns how many went now. */
  retain(live: LiveWorkload): number {
    return this.#series.retain(live);
  }

  /** Label sets held. */
  get size(): number {
    return this.#series.size;
  }

  /** The series of one label set, made on first use. */
  series(d: RequestLabelsInput): RequestSeries {
    const key = `${istioPeerKey(d)}\u0001${d.protocol}\u0001${d.responseCode}\u0001${d.grpcStatus ?? ''}\u0001${d.flags}\u0001${d.security}`;
    let series = this.#series.get(key);
    if (series === undefined) {
      series = new RequestSeries(Object.freeze({
        ...istioPeerLabels(d, this.#cluster),
        request_protocol: d.protocol,
        response_code: String(d.responseCode),
        grpc_response_status: d.grpcStatus ?? '',
        response_flags: d.flags,
        connection_security_policy: d.security,
      }), ISTIO_DURATION_BUCKETS_MS.length, ISTIO_SIZE_BUCKETS.length);
      this.#series.set(key, series);
    }
    return series;
  }

  observe(series: RequestSeries, durationMs: number, requestBytes: number, responseBytes: number): void {
    series.requests += 1;
    series.duration.observe(ISTIO_DURATION_BUCKETS_MS, durationMs);
    series.requestBytes.observe(ISTIO_SIZE_BUCKETS, requestBytes);
    series.responseBytes.observe(ISTIO_SIZE_BUCKETS, responseBytes);
  }
}
