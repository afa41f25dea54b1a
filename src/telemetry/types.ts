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
}
