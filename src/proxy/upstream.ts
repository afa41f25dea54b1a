// The upstream connector: a planned hop becomes a byte stream to the destination pod, a
// direct TCP socket (same node, or outside the mesh) or a CONNECT stream through the pooled
// mTLS tunnel to the pod's node agent. L4 splicing and the HTTP layer both connect through it.

import type { Http2Stream } from 'node:http2';
import type { Socket } from 'node:net';

import type { Hop } from './outbound-route.ts';
import { connectTcp } from './tcp-connect.ts';
import type { TunnelRequest } from './tunnel-pool.ts';

/** A hop that can be connected (planHop said how). */
export type ReachableHop = Exclude<Hop, { readonly kind: 'unreachable' }>;

/** The tunnel pool as the connector uses it. */
export interface TunnelOpener {
  open(request: TunnelRequest): Promise<Http2Stream>;
}

export interface UpstreamRequest {
  readonly hop: ReachableHop;
  /** The source workload's SPIFFE id: the tunnel's client certificate. */
  readonly sourceIdentity: string;
  /** The original client address, sent through the tunnel as `Forwarded: for=`. */
  readonly clientIp: string;
  /** Trace context for the tunnel's CONNECT (the connection record's traceHeaders). */
  readonly traceHeaders?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  /** The stream carries HTTP of this version (the HTTP layer's pooled connections); told to the peer agent. */
  readonly l7?: 'http1' | 'h2';
}

export interface UpstreamOptions {
  /** Port of the peer agents' tunnel listener. Default 15008. */
  readonly tunnelPort?: number;
  /** Per attempt, the TCP connect to a pod (direct). The tunnel pool has its own timeouts. Default 5 s. */
  readonly connectTimeoutMs?: number;
}

/** A connected upstream: a TCP socket or a tunnel stream the peer answered 200. */
export type UpstreamStream = Socket | Http2Stream;

/**
 * Calls `done` once, when `stream` is over: at once if it is already destroyed (its 'close' may
 * have gone by while a connect was awaited), else on its 'close'. For what a connection holds
 * while it is open (a descriptor of the caps, a maxConnections permit).
 */
export function afterClose(stream: UpstreamStream, done: () => void): void {
  if (stream.destroyed) done();
  else stream.once('close', done);
}

/**
 * Makes a tunnel stream turn written strings into Buffers before they reach its writev.
 * Node's Http2Stream is built with decodeStrings off, and a writev that mixes a string (an
 * HTTP/1.1 head written by node:http or undici) with Buffers sends corrupted bytes for the
 * string (seen as garbage in the first bytes of a response head). Safe to repeat.
 */
export function decodeStringsOnWrite(stream: Http2Stream): void {
  const state = (stream as unknown as { _writableState?: { decodeStrings: boolean } })._writableState;
  if (state !== undefined) state.decodeStrings = true;
}

export class UpstreamConnector {
  readonly #tunnels: TunnelOpener;
  readonly #tunnelPort: number;
  readonly #connectMs: number;

  constructor(tunnels: TunnelOpener, options: UpstreamOptions = {}) {
    this.#tunnels = tunnels;
    this.#tunnelPort = options.tunnelPort ?? 15008;
    this.#connectMs = options.connectTimeoutMs ?? 5_000;
  }

  /**
   * Resolves with the stream, or rejects with a WeftError (connect failed or timed out,
   * abandoned, no credentials, tunnel refused with its status, ...): see connect-failure.ts.
   */
  connect(r: UpstreamRequest): Promise<UpstreamStream> {
    const { hop } = r;
    if (hop.kind === 'direct') {
      return connectTcp({ host: hop.target.ip, port: hop.target.port, timeoutMs: this.#connectMs, signal: r.signal });
    }
    return this.#tunnels.open({
      sourceIdentity: r.sourceIdentity,
      destinationIdentity: hop.workload.identity,
      node: { address: hop.nodeAddress, port: this.#tunnelPort },
      target: { address: hop.target.ip, port: hop.target.port },
      forwardedFor: r.clientIp,
      traceHeaders: r.traceHeaders,
      signal: r.signal,
      l7: r.l7,
    }).then((stream) => {
      decodeStringsOnWrite(stream);
      return stream;
    });
  }
}
