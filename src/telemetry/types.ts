// What telemetry is told about a connection. The proxy declares the same shapes as its
// ConnectionObserver contract; the app passes a ConnectionTelemetry where that is expected.

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

/** The labels of one request series. */
export interface RequestLabelsInput {
  readonly reporter: 'source' | 'destination';
  readonly source: PeerRef;
  readonly destination: PeerRef;
  readonly service: ServiceRef | undefined;
  readonly security: string;
  readonly protocol: string;
  readonly responseCode: number;
  readonly grpcStatus: string | undefined;
  readonly flags: string;
}

/** Live byte counts; a net.Socket fits. */
export interface ByteSource {
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

/** The flag (response_flags) that means an authorization policy denied the connection. */
export const DENIED_FLAG = 'DENY';

/** The flag of a plaintext connection refused because the destination is STRICT (mTLS only). */
export const MTLS_REQUIRED_FLAG = 'MTLS_REQUIRED';

/**
 * Why the destination agent refused a plaintext (not mesh) inbound connection, by its flag:
 * the reason label of weft_inbound_plaintext_refused_total.
 */
export const PLAINTEXT_REFUSALS: Readonly<Record<string, string>> = Object.freeze({
  [MTLS_REQUIRED_FLAG]: 'mtls_required',
  [DENIED_FLAG]: 'policy_denied',
  BR: 'not_a_mesh_pod',
  NR: 'no_original_destination',
});

/** Request headers a trace context is read from (the proxy's TraceCarrier). */
export type TraceCarrier = Readonly<Record<string, string | string[] | undefined>>;

/** What a connection record may offer besides the metrics record's methods. */
export interface ObservedConnection {
  identify(description: ConnectionDescription): void;
  countBytes(source: ByteSource, facing: 'client' | 'server'): void;
  finish(flags: string, detail?: string): void;
  /** Trace context for the next hop (the tunnel's CONNECT); undefined when not traced. */
  traceHeaders?(): Readonly<Record<string, string>> | undefined;
}

/** A connection observer as the proxy declares it (ConnectionObserver). */
export interface Observer {
  open(incoming?: TraceCarrier): ObservedConnection;
  handshakeFailed(reason: string, detail: string): void;
  forwardedMismatch?(claimed: string, principal: string, peerIp: string): void;
}

// ---- HTTP requests (the HTTP layer's RequestObserver, as far as telemetry reads it) ----

/** The request as it arrived at this agent: who reports it, and its headers (lowercase names). */
export interface IncomingRequest {
  readonly reporter: 'source' | 'destination';
  readonly method: string;
  readonly path: string;
  readonly authority: string | undefined;
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
}

export interface RequestDescription {
  readonly reporter: 'source' | 'destination';
  readonly source: PeerRef;
  readonly destination: PeerRef;
  readonly service: ServiceRef | undefined;
  readonly security: 'mutual_tls' | 'none' | 'unknown';
  readonly protocol: 'http' | 'grpc';
  readonly method: string;
  readonly authority: string | undefined;
  readonly path: string;
  /** `namespace/name` of the route that decided, when one did. */
  readonly route: string | undefined;
}

export interface RequestOutcome {
  /** The status the client got (0: none, reset before a response). */
  readonly status: number;
  readonly grpcStatus: string | undefined;
  /** A ResponseFlags value, '-' when none. */
  readonly flags: string;
  readonly requestBytes: number;
  readonly responseBytes: number;
  /** `ip:port` of the endpoint that answered. */
  readonly upstream: string | undefined;
  readonly retries: number;
  readonly detail?: string;
}

/** Trace headers for the request sent on: set these, and remove these others first. */
export interface OutgoingTraceHeaders {
  readonly set: Readonly<Record<string, string>>;
  /** Every header the configured propagators use (traceparent, tracestate, b3, x-b3-*...). */
  readonly remove: readonly string[];
}

export interface ObservedRequest {
  describe(description: RequestDescription): void;
  finish(outcome: RequestOutcome): void;
  traceHeaders?(): OutgoingTraceHeaders | undefined;
}
