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
