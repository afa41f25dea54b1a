// One record per connection: opened is counted when the proxy says who talks to whom,
// closed (with its response flags), bytes, duration and one access-log line when it finishes,
// exactly once however it ended. A plaintext connection the destination refused (STRICT, a
// policy, not a mesh pod) is counted by reason and logged at a bounded rate instead, since
// anything on the network can make them. Bytes are read from the sockets' own counters (no per-chunk
// work) at finish and, for live connections, at each scrape.

import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

import { systemClock, type Clock } from '../core/clock.ts';
import { PairStats, TcpMetrics } from './tcp-metrics.ts';
import { RateLimitedLog } from './rate-limited-log.ts';
import { DENIED_FLAG, PLAINTEXT_REFUSALS, type ByteSource, type ConnectionDescription, type PeerRef } from './types.ts';

export interface ConnectionTelemetryOptions {
  readonly registry: Registry;
  /** Access log; use an asynchronous pino destination so logging never blocks the proxy. */
  readonly logger: Pick<Logger, 'info' | 'warn' | 'debug'>;
  readonly clock?: Clock;
  /** source_cluster / destination_cluster. */
  readonly cluster?: string;
  readonly durationBuckets?: readonly number[];
  /** Write access-log lines. Default true. */
  readonly accessLog?: boolean;
  /**
   * Refused-handshake log lines per second at most (a port scan must not flood the log); the
   * counter still counts every one, and the next line says how many were left out. Default 10.
   */
  readonly handshakeLogsPerSecond?: number;
}

const UNIDENTIFIED: ConnectionDescription = Object.freeze({
  reporter: 'source', source: Object.freeze({}), destination: Object.freeze({}), security: 'unknown',
});

export class ConnectionTelemetry {
  readonly metrics: TcpMetrics;
  readonly #logger: Pick<Logger, 'info' | 'warn' | 'debug'>;
  readonly #clock: Clock;
  readonly #accessLog: boolean;
  readonly #handshakeLog: RateLimitedLog;
  readonly #refusalLog: RateLimitedLog;
  readonly #live = new Set<ConnectionRecordImpl>();

  constructor(options: ConnectionTelemetryOptions) {
    this.metrics = new TcpMetrics({ registry: options.registry, cluster: options.cluster, durationBuckets: options.durationBuckets });
    this.metrics.beforeCollect(() => {
      for (const r of this.#live) r.flush();
    });
    this.#logger = options.logger;
    this.#clock = options.clock ?? systemClock;
    this.#accessLog = options.accessLog ?? true;
    this.#handshakeLog = new RateLimitedLog(options.logger, this.#clock, options.handshakeLogsPerSecond ?? 10);
    this.#refusalLog = new RateLimitedLog(options.logger, this.#clock, options.handshakeLogsPerSecond ?? 10);
  }

  /** A new connection: the clock starts now. */
  open(): ConnectionRecordImpl {
    return new ConnectionRecordImpl(this, this.#clock.monotonic());
  }

  handshakeFailed(reason: string, detail: string): void {
    this.metrics.handshakeFailed(reason);
    this.#handshakeLog.warn({ reason, detail }, 'tunnel handshake refused');
  }

  forwardedMismatch(claimed: string, principal: string, peerIp: string): void {
    this.metrics.forwardedMismatch();
    this.#refusalLog.warn({ claimed, principal, peer: peerIp },
      `tunnel stream from ${peerIp} claimed source ${claimed}, which is not a workload of ${principal}: the peer's own address stands`);
  }

  /** Connections whose bytes are being counted now. */
  get live(): number {
    return this.#live.size;
  }

  /** @internal */
  track(r: ConnectionRecordImpl, on: boolean): void {
    if (on) this.#live.add(r);
    else this.#live.delete(r);
  }

  /** @internal */
  ended(r: ConnectionRecordImpl, d: ConnectionDescription, pair: PairStats | undefined, flags: string, detail: string | undefined, startedAt: number): void {
    const ms = this.#clock.monotonic() - startedAt;
    // An HTTP connection is reported per request (request telemetry); its own line is for debugging.
    if (pair !== undefined) this.metrics.closed(pair, flags, ms / 1000);
    if (flags === DENIED_FLAG) this.metrics.denied(d.reporter);
    const refusal = d.reporter === 'destination' && d.security === 'none' ? PLAINTEXT_REFUSALS[flags] : undefined;
    if (refusal !== undefined) {
      this.metrics.plaintextRefused(refusal);
      this.#refusalLog.warn({ reason: refusal, src: d.source.address, dst: d.destination.address, workload: d.destination.workload, namespace: d.destination.namespace, detail }, 'inbound plaintext connection refused');
      return;
    }
    if (!this.#accessLog) return;
    const line: Record<string, unknown> = {
      reporter: d.reporter,
      src: peerLog(d.source),
      dst: peerLog(d.destination),
      service: d.service?.host,
      security: d.security,
      bytes_sent: r.responseBytes,
      bytes_received: r.requestBytes,
      duration_ms: Math.round(ms * 1000) / 1000,
      flags,
    };
    if (detail !== undefined) line.detail = detail;
    if (d.l7 === true) this.#logger.debug({ ...line, l7: true }, 'connection');
    else this.#logger.info(line, 'connection');
  }
}

function peerLog(p: PeerRef): Record<string, string | undefined> {
  return { workload: p.workload, namespace: p.namespace, identity: p.principal, address: p.address };
}

/** Implements the proxy's ConnectionRecord contract. */
export class ConnectionRecordImpl {
  readonly #t: ConnectionTelemetry;
  readonly #startedAt: number;
  #description: ConnectionDescription | undefined;
  #pair: PairStats | undefined;
  #bytes: ByteSource | undefined;
  #requestFromReads = true;
  #request = 0;
  #response = 0;
  #done = false;

  constructor(t: ConnectionTelemetry, startedAt: number) {
    this.#t = t;
    this.#startedAt = startedAt;
  }

  /** Request (client to server) bytes counted so far. */
  get requestBytes(): number {
    return this.#request;
  }

  /** Response (server to client) bytes counted so far. */
  get responseBytes(): number {
    return this.#response;
  }

  identify(description: ConnectionDescription): void {
    if (this.#description !== undefined || this.#done) return;
    this.#description = description;
    if (description.l7 === true) return;
    this.#pair = this.#t.metrics.pair(description);
    this.#pair.opened += 1;
  }

  countBytes(source: ByteSource, facing: 'client' | 'server'): void {
    if (this.#done) return;
    this.#bytes = source;
    this.#requestFromReads = facing === 'client';
    this.#t.track(this, true);
  }

  /** Folds bytes moved since the last flush into the label set's totals. */
  flush(): void {
    const b = this.#bytes;
    const p = this.#pair;
    if (b === undefined || p === undefined) return;
    const request = this.#requestFromReads ? b.bytesRead : b.bytesWritten;
    const response = this.#requestFromReads ? b.bytesWritten : b.bytesRead;
    p.received += request - this.#request;
    p.sent += response - this.#response;
    this.#request = request;
    this.#response = response;
  }

  finish(flags: string, detail?: string): void {
    if (this.#done) return;
    if (this.#description === undefined) this.identify(UNIDENTIFIED);
    this.flush();
    this.#done = true;
    this.#t.track(this, false);
    this.#t.ended(this, this.#description ?? UNIDENTIFIED, this.#pair, flags, detail, this.#startedAt);
  }
}
