// One record per HTTP request: Istio's request metrics and one access-log line (method,
// authority, path, status, duration, upstream, route, retries, flags), written once when the
// request finishes, whatever way it ended.

import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

import { systemClock, type Clock } from '../core/clock.ts';
import { RequestMetrics } from './request-metrics.ts';
import type { IncomingRequest, PeerRef, RequestDescription, RequestOutcome } from './types.ts';

export interface RequestTelemetryOptions {
  readonly registry: Registry;
  readonly logger: Pick<Logger, 'info'>;
  readonly clock?: Clock;
  readonly cluster?: string;
  /** Write access-log lines. Default true. */
  readonly accessLog?: boolean;
}

const UNDESCRIBED: RequestDescription = Object.freeze({
  reporter: 'source', source: Object.freeze({}), destination: Object.freeze({}), service: undefined, security: 'unknown',
  protocol: 'http', method: '-', authority: undefined, path: '-', route: undefined,
});

function peerLog(p: PeerRef): Record<string, string | undefined> {
  return { workload: p.workload, namespace: p.namespace, identity: p.principal, address: p.address };
}

export class RequestTelemetry {
  readonly metrics: RequestMetrics;
  readonly #logger: Pick<Logger, 'info'>;
  readonly #clock: Clock;
  readonly #accessLog: boolean;

  constructor(options: RequestTelemetryOptions) {
    this.metrics = new RequestMetrics({ registry: options.registry, cluster: options.cluster });
    this.#logger = options.logger;
    this.#clock = options.clock ?? systemClock;
    this.#accessLog = options.accessLog ?? true;
  }

  /** A request's head arrived: the clock starts now. (Headers are not read: labels come from describe.) */
  request(_incoming?: IncomingRequest): RequestRecordImpl {
    return new RequestRecordImpl(this, this.#clock.monotonic());
  }

  /** @internal */
  ended(d: RequestDescription, o: RequestOutcome, startedAt: number): void {
    const ms = this.#clock.monotonic() - startedAt;
    const series = this.metrics.series({
      reporter: d.reporter, source: d.source, destination: d.destination, service: d.service, security: d.security, protocol: d.protocol,
      responseCode: o.status, grpcStatus: o.grpcStatus, flags: o.flags,
    });
    this.metrics.observe(series, ms, o.requestBytes, o.responseBytes);
    if (!this.#accessLog) return;
    const line: Record<string, unknown> = {
      reporter: d.reporter,
      src: peerLog(d.source),
      dst: peerLog(d.destination),
      service: d.service?.host,
      security: d.security,
      protocol: d.protocol,
      method: d.method,
      authority: d.authority,
      path: d.path,
      status: o.status,
      grpc_status: o.grpcStatus,
      bytes_received: o.requestBytes,
      bytes_sent: o.responseBytes,
      duration_ms: Math.round(ms * 1000) / 1000,
      upstream: o.upstream,
      route: d.route,
      retries: o.retries,
      flags: o.flags,
    };
    if (o.detail !== undefined) line.detail = o.detail;
    this.#logger.info(line, 'request');
  }
}

/** Implements the HTTP layer's RequestRecord contract. */
export class RequestRecordImpl {
  readonly #t: RequestTelemetry;
  readonly #startedAt: number;
  #description: RequestDescription | undefined;
  #done = false;

  constructor(t: RequestTelemetry, startedAt: number) {
    this.#t = t;
    this.#startedAt = startedAt;
  }

  describe(d: RequestDescription): void {
    this.#description ??= d;
  }

  finish(o: RequestOutcome): void {
    if (this.#done) return;
    this.#done = true;
    this.#t.ended(this.#description ?? UNDESCRIBED, o, this.#startedAt);
  }
}
