// What the proxy needs from the rest of weft, declared here (the consumer) and narrow, so the
// app can adapt any implementation: the redirector's original-destination reader, a view of
// the mesh model, an authorizer, workload TLS credentials and a connection observer
// (telemetry). Data types come from the model; nothing here imports another feature module.

import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { SecureContext } from 'node:tls';

import type { AuthorizationDecision, AuthorizationRequest } from '../model/authorize.ts';
import type { ServiceAtVip } from '../model/state.ts';
import type { MtlsDecision } from '../model/peer-authentication.ts';
import type { Endpoint, Workload } from '../model/types.ts';

export interface SocketAddress {
  readonly address: string;
  readonly port: number;
}

/**
 * Where a captured connection was going (SO_ORIGINAL_DST in production; a table in tests).
 * Throwing or answering undefined refuses the connection.
 */
export type OriginalDestinationReader = (socket: Socket) => SocketAddress | undefined | Promise<SocketAddress | undefined>;

/** The slice of the mesh model the proxy reads per connection (MeshState plus node addresses). */
export interface MeshView {
  workloadByIp(ip: string): Workload | undefined;
  serviceByVip(ip: string, port: number): ServiceAtVip | undefined;
  /** Endpoints of a Service port (the Service port, not the target port). */
  endpoints(serviceKey: string, port: number): readonly Endpoint[];
  /** The address of a node's agent (its tunnel listener runs there), or undefined when unknown. */
  nodeAddress(node: string): string | undefined;
  /**
   * Whether the workload takes plaintext connections from outside the mesh (PeerAuthentication);
   * absent means PERMISSIVE for every workload.
   */
  mtlsMode?(workload: Workload): MtlsDecision;
}

/** A pure policy check (model/authorize.ts `authorize` bound to the current state). */
export type Authorizer = (request: AuthorizationRequest) => AuthorizationDecision;

/**
 * The L4 rate limits (RateLimitPolicy `connections`) of a pod of this node, drawn once per new
 * opaque connection to it: why it is refused, or undefined to admit it. Shadow policies count
 * and admit.
 */
export type ConnectionRateGate = (workload: Workload) => string | undefined;

/**
 * Workload TLS material for the tunnel. Contexts must present the identity's certificate and
 * carry the trust bundle as `ca` (OpenSSL checks the chain against it), and must be built once
 * per certificate, not per call.
 */
export interface TunnelCredentials {
  /** The context for a local workload identity, or undefined when this node holds none. */
  secureContext(identity: string): SecureContext | undefined;
  /**
   * The peer's SPIFFE id (URI form) after OpenSSL accepted its chain. Throws when the peer is
   * not acceptable (revoked, no URI SAN, not `expectedIdentity`, ...); the thrown error's
   * message goes to the log.
   */
  verifyPeer(certificate: X509Certificate, expectedIdentity?: string): string;
}

// ---- Telemetry: what the proxy reports about each connection ----

/** One side of a connection as telemetry labels it; undefined fields are unknown. */
export interface PeerRef {
  readonly workload?: string;
  readonly namespace?: string;
  /** SPIFFE id. */
  readonly principal?: string;
  readonly app?: string;
  /** `ip:port` */
  readonly address?: string;
}

export interface ServiceRef {
  /** `name.namespace.svc.<cluster domain>` */
  readonly host: string;
  readonly name: string;
  readonly namespace: string;
}

export interface ConnectionDescription {
  readonly reporter: 'source' | 'destination';
  readonly source: PeerRef;
  readonly destination: PeerRef;
  readonly service?: ServiceRef;
  readonly security: 'mutual_tls' | 'none' | 'unknown';
  /** The connection carried HTTP, reported request by request: no TCP metrics, no info-level line of its own. */
  readonly l7?: boolean;
}

/** Live byte counts: a net.Socket fits. */
export interface ByteSource {
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

/** The one record of one connection. */
export interface ConnectionRecord {
  /** Who talks to whom, once known (at most once; finish fills unknowns if never called). */
  identify(description: ConnectionDescription): void;
  /**
   * Where bytes are counted: `facing` 'client' when the socket faces the client (its reads are
   * request bytes), 'server' when it faces the server (its writes are request bytes).
   */
  countBytes(source: ByteSource, facing: 'client' | 'server'): void;
  /** Exactly once, whatever way the connection ended. `flags` is a ResponseFlags value. */
  finish(flags: string, detail?: string): void;
  /**
   * Headers that carry this connection's trace to the next hop (W3C `traceparent`, maybe
   * `tracestate`), sent in the tunnel's CONNECT as HBONE does; undefined when not traced.
   */
  traceHeaders?(): TraceHeaders | undefined;
}

/** Trace-context headers, lowercase names. */
export type TraceHeaders = Readonly<Record<string, string>>;

/** Request headers a trace context may be read from (node:http2's IncomingHttpHeaders fits). */
export type TraceCarrier = Readonly<Record<string, string | string[] | undefined>>;

export interface ConnectionObserver {
  /**
   * Called when a connection (or tunnel stream) is accepted; the clock starts here. `incoming`:
   * the tunnel CONNECT's headers, whose trace context the connection's span continues.
   */
  open(incoming?: TraceCarrier): ConnectionRecord;
  /** A tunnel TLS handshake (either side) was refused; `reason` is a small fixed vocabulary. */
  handshakeFailed(reason: string, detail: string): void;
  /**
   * A tunnel stream's `Forwarded` address is not a workload with the peer's verified identity:
   * it was ignored (the peer agent's address stood instead).
   */
  forwardedMismatch?(claimed: string, principal: string, peerIp: string): void;
}

/**
 * Overload, as telemetry counts it (and logs it at a bounded rate): connections refused by a
 * cap, listening sockets that failed to accept, TLS handshakes refused before they started.
 */
export interface OverloadObserver {
  /** A connection refused at accept: its source, or the agent as a whole, was at its cap. */
  capHit(listener: string, cap: 'source' | 'global', source: string): void;
  /** accept() failed on a listening socket (EMFILE, ENFILE, ENOBUFS, ...); the listener goes on. */
  acceptFailed(listener: string, code: string): void;
  /** A tunnel connection closed before its TLS handshake: too many pending, from its address or in all. */
  handshakeCapHit(cap: 'source' | 'global', source: string): void;
}

export const NO_OVERLOAD_OBSERVER: OverloadObserver = Object.freeze({
  capHit: (): void => undefined,
  acceptFailed: (): void => undefined,
  handshakeCapHit: (): void => undefined,
});

/** An observer that records nothing (tests, or telemetry switched off). */
export const NO_TELEMETRY: ConnectionObserver = Object.freeze({
  open: (): ConnectionRecord => NO_RECORD,
  handshakeFailed: (): void => undefined,
});

const NO_RECORD: ConnectionRecord = Object.freeze({
  identify: (): void => undefined,
  countBytes: (): void => undefined,
  finish: (): void => undefined,
});
