// The HTTP layer's upstream connection pools: one Sender per (client pod, endpoint, hop,
// protocol). Keyed by the client pod because a tunnelled connection carries its client's
// certificate identity and `Forwarded: for=` address, which the destination agent uses
// for policy and telemetry; a pooled connection must never speak for another pod. Idle
// senders are swept on a timer; close() lets requests finish, destroy() resets them.
// A scope (the destination side: one tunnel stream) gets senders of its own, which go with it:
// a stream that dies takes the pod connections it carried along, however their requests stand.
// A Service's DestinationPolicy connectionPool bounds what its senders open: maxConnections
// upstream connections to the Service from this agent at once (a counter in memory every
// worker shares; a connect over it fails at once with POOL_OVERFLOW, never waits), and
// maxRequestsPerConnection requests per connection before it is retired. The limits are part
// of the sender's key, so a changed policy takes effect on new senders and the old go idle.

import { ProxyErrors, proxyError } from '../errors.ts';
import { endpointKey } from '../load-balancer.ts';
import type { ConcurrencyLimits } from '../resilience/concurrency-limit.ts';
import { afterClose, type ReachableHop, type UpstreamStream } from '../upstream.ts';
import type { UpstreamConnect } from './pod-sockets.ts';
import { H1Sender } from './upstream-h1.ts';
import { H2Sender } from './upstream-h2.ts';
import type { Sender } from './messages.ts';

export type UpstreamProtocol = 'h1' | 'h2';

/** The DestinationPolicy connectionPool limits of the Service a sender's endpoint belongs to. */
export interface ServicePool {
  /** `namespace/name` */
  readonly serviceKey: string;
  readonly maxConnections?: number;
  /** 0 or absent: no limit. */
  readonly maxRequestsPerConnection?: number;
}

export interface UpstreamPoolsOptions {
  /** Idle pooled connections close after this long. Default 60 s. */
  readonly idleMs?: number;
  /** How often idle senders are dropped. Default 30 s. */
  readonly sweepMs?: number;
  /** The counters of maxConnections (shared by every worker); absent: maxConnections is not kept. */
  readonly connectionLimits?: ConcurrencyLimits;
}

export class UpstreamPools {
  readonly #connector: UpstreamConnect;
  readonly #idleMs: number;
  readonly #limits: ConcurrencyLimits | undefined;
  readonly #senders = new Map<string, Sender>();
  /** The keys of each scope's senders. */
  readonly #scopes = new Map<string, Set<string>>();
  readonly #sweep: NodeJS.Timeout;
  #closed = false;

  constructor(connector: UpstreamConnect, options: UpstreamPoolsOptions = {}) {
    this.#connector = connector;
    this.#idleMs = options.idleMs ?? 60_000;
    this.#limits = options.connectionLimits;
    this.#sweep = setInterval(() => this.#dropIdle(), options.sweepMs ?? 30_000);
    this.#sweep.unref();
  }

  get size(): number {
    return this.#senders.size;
  }

  /** The sender for this client, hop and protocol (made on first use), within `scope` when given, under `pool`'s limits. */
  sender(sourceIdentity: string, clientIp: string, hop: ReachableHop, protocol: UpstreamProtocol, scope?: string, pool?: ServicePool): Sender {
    const where = hop.kind === 'tunnel' ? `tunnel:${hop.nodeAddress}` : 'direct';
    const limited = pool === undefined || (pool.maxConnections === undefined && (pool.maxRequestsPerConnection ?? 0) === 0) ? ''
      : `|${pool.serviceKey}|${pool.maxConnections ?? '-'}|${pool.maxRequestsPerConnection ?? 0}`;
    const key = `${scope ?? ''}|${clientIp}|${sourceIdentity}|${where}|${endpointKey(hop.target)}|${protocol}${limited}`;
    let s = this.#senders.get(key);
    if (s === undefined) {
      // Told to the destination agent, so it reports each request (reporter="destination").
      const l7 = protocol === 'h1' ? 'http1' : 'h2';
      const dial = () => this.#connector.connect({ hop, sourceIdentity, clientIp, l7 });
      const connect = pool?.maxConnections === undefined || this.#limits === undefined ? dial : this.#limitedDial(dial, pool.serviceKey, pool.maxConnections);
      const authority = endpointKey(hop.target);
      const maxRequests = pool?.maxRequestsPerConnection ?? 0;
      s = protocol === 'h1'
        ? new H1Sender(`http://${authority}`, connect, { keepAliveMs: this.#idleMs, maxRequestsPerConnection: maxRequests })
        : new H2Sender(authority, connect, { idleMs: this.#idleMs, maxRequestsPerConnection: maxRequests });
      if (this.#closed) s.destroy();
      this.#senders.set(key, s);
      if (scope !== undefined) {
        const keys = this.#scopes.get(scope) ?? new Set<string>();
        keys.add(key);
        this.#scopes.set(scope, keys);
      }
    }
    return s;
  }

  /** `dial` under the Service's maxConnections: a permit per connection, given back when it closes. */
  #limitedDial(dial: () => Promise<UpstreamStream>, serviceKey: string, max: number): () => Promise<UpstreamStream> {
    const limits = this.#limits;
    return async () => {
      const permit = limits?.tryAcquire(`connections|${serviceKey}`, max);
      if (permit === undefined) throw proxyError(ProxyErrors.POOL_OVERFLOW, `DestinationPolicy of ${serviceKey}: ${max} connections at most`);
      let stream: UpstreamStream;
      try {
        stream = await dial();
      } catch (err: unknown) {
        permit.release();
        throw err;
      }
      afterClose(stream, () => permit.release());
      return stream;
    };
  }

  /**
   * Ends a scope's senders: idle ones close (FIN); one with a request still in flight is
   * destroyed (its connections reset), since whoever was to read the answer is gone.
   */
  release(scope: string): void {
    const keys = this.#scopes.get(scope);
    if (keys === undefined) return;
    this.#scopes.delete(scope);
    for (const key of keys) {
      const s = this.#senders.get(key);
      this.#senders.delete(key);
      if (s === undefined) continue;
      if (s.busy) s.destroy();
      else void s.close().catch(() => undefined);
    }
  }

  /** Hands a connection made elsewhere to the sender for this client, hop and protocol, to be used first. */
  adopt(sourceIdentity: string, clientIp: string, hop: ReachableHop, protocol: UpstreamProtocol, connection: UpstreamStream, scope?: string): void {
    this.sender(sourceIdentity, clientIp, hop, protocol, scope).adopt(connection, this.#idleMs);
  }

  #dropIdle(): void {
    for (const [key, s] of this.#senders) {
      if (!s.idle) continue;
      this.#senders.delete(key);
      for (const [scope, keys] of this.#scopes) {
        if (keys.delete(key) && keys.size === 0) this.#scopes.delete(scope);
      }
      void s.close();
    }
  }

  /** Lets requests in flight finish, then closes every connection. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweep);
    const all = [...this.#senders.values()];
    this.#senders.clear();
    this.#scopes.clear();
    await Promise.all(all.map((s) => s.close().catch(() => undefined)));
  }

  destroy(): void {
    this.#closed = true;
    clearInterval(this.#sweep);
    for (const s of this.#senders.values()) s.destroy();
    this.#senders.clear();
    this.#scopes.clear();
  }
}
