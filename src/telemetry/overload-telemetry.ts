// Overload made visible: connections refused by a cap, failed accepts and refused TLS
// handshakes are counted (every one) and logged at a bounded rate (one line per kind and
// listener per interval, saying how many were left out since), and the caps themselves are
// gauges, so a flood shows on /metrics and in the log without flooding either.

import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';

import { systemClock, type Clock } from '../core/clock.ts';

/** The caps as the gauges show them; read at each scrape. */
export interface OverloadLimits {
  /** Descriptors all workers' connections may hold, and hold now (this worker's view of the shared count). */
  readonly connectionFds: () => { readonly cap: number; readonly held: number; readonly perSourceCap: number; readonly heldHere: number };
  /** Pending tunnel handshakes: caps and how many are pending in this worker. */
  readonly handshakes: () => { readonly cap: number; readonly perSourceCap: number; readonly pending: number };
}

export interface OverloadTelemetryOptions {
  readonly registry: Registry;
  readonly logger: Pick<Logger, 'warn'>;
  readonly clock?: Clock;
  /** One log line per kind and listener at most this often. Default 10 s. */
  readonly logIntervalMs?: number;
  readonly limits?: OverloadLimits;
}

export class OverloadTelemetry {
  readonly #refused: Counter<'listener' | 'cap'>;
  readonly #acceptFailures: Counter<'listener' | 'code'>;
  readonly #handshakesRefused: Counter<'cap'>;
  readonly #logger: Pick<Logger, 'warn'>;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #lastLog = new Map<string, { at: number; suppressed: number }>();

  constructor(o: OverloadTelemetryOptions) {
    const registers = [o.registry];
    this.#refused = new Counter({
      name: 'weft_proxy_connections_refused_total', help: 'Connections refused at accept because a cap was reached (cap: source or global)',
      labelNames: ['listener', 'cap'], registers,
    });
    this.#acceptFailures = new Counter({
      name: 'weft_proxy_accept_failures_total', help: 'accept() failures on a listening socket, by errno (EMFILE: out of descriptors)',
      labelNames: ['listener', 'code'], registers,
    });
    this.#handshakesRefused = new Counter({
      name: 'weft_tunnel_handshakes_refused_total', help: 'Tunnel connections closed before their TLS handshake: too many pending (cap: source or global)',
      labelNames: ['cap'], registers,
    });
    const limits = o.limits;
    if (limits !== undefined) {
      // The global caps are the same in every worker: the agent's scrape keeps one value, not the sum.
      new Gauge({
        name: 'weft_proxy_connection_fd_cap', help: 'Descriptors the proxy\'s connections may hold (scope: global, all workers; source, one source in all workers)',
        labelNames: ['scope'], registers, aggregator: 'max',
        collect() {
          const c = limits.connectionFds();
          this.set({ scope: 'global' }, c.cap);
          this.set({ scope: 'source' }, c.perSourceCap);
        },
      });
      new Gauge({
        name: 'weft_proxy_connection_fds', help: 'Descriptors the proxy\'s connections hold now', registers, aggregator: 'sum',
        collect() {
          this.set(limits.connectionFds().heldHere);
        },
      });
      new Gauge({
        name: 'weft_tunnel_handshake_cap', help: 'Pending tunnel TLS handshakes allowed (scope: global; source, from one address in all workers)',
        labelNames: ['scope'], registers, aggregator: 'max',
        collect() {
          const h = limits.handshakes();
          this.set({ scope: 'global' }, h.cap);
          this.set({ scope: 'source' }, h.perSourceCap);
        },
      });
      new Gauge({
        name: 'weft_tunnel_pending_handshakes', help: 'Tunnel TLS handshakes in progress', registers, aggregator: 'sum',
        collect() {
          this.set(limits.handshakes().pending);
        },
      });
    }
    this.#logger = o.logger;
    this.#clock = o.clock ?? systemClock;
    this.#intervalMs = o.logIntervalMs ?? 10_000;
  }

  capHit(listener: string, cap: 'source' | 'global', source: string): void {
    this.#refused.inc({ listener, cap });
    this.#log(`cap:${listener}:${cap}`, { listener, cap, source }, cap === 'source'
      ? 'connections refused: a source reached its cap (one pod or peer must not take the descriptors others need)'
      : 'connections refused: the agent reached its global connection cap');
  }

  acceptFailed(listener: string, code: string): void {
    this.#acceptFailures.inc({ listener, code });
    this.#log(`accept:${listener}:${code}`, { listener, code }, 'accept failed on a listening socket');
  }

  handshakeCapHit(cap: 'source' | 'global', source: string): void {
    this.#handshakesRefused.inc({ cap });
    this.#log(`handshake:${cap}`, { cap, source }, cap === 'source'
      ? 'tunnel connections refused: too many pending TLS handshakes from one address'
      : 'tunnel connections refused: too many pending TLS handshakes');
  }

  #log(key: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.#clock.monotonic();
    const last = this.#lastLog.get(key);
    if (last !== undefined && now - last.at < this.#intervalMs) {
      last.suppressed += 1;
      return;
    }
    this.#lastLog.set(key, { at: now, suppressed: 0 });
    this.#logger.warn(last !== undefined && last.suppressed > 0 ? { ...fields, suppressed: last.suppressed } : fields, msg);
  }
}
