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

/** What the HTTP layer tells telemetry about one request (the proxy's RequestDescription). */
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
  readonly route: string | undefined;
}

/** How a request ended (the proxy's RequestOutcome). */
export interface RequestOutcome {
  readonly status: number;
  readonly grpcStatus: string | undefined;
  readonly flags: string;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly upstream: string | undefined;
  readonly retries: number;
  readonly detail?: string;
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
