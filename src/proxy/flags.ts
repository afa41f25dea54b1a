// How a connection ended, in the spirit of Envoy's response flags (the `response_flags`
// metric label and the access log's `flags`).

export const ResponseFlags = {
  /** Ended normally (both sides closed, or a clean half-close sequence). */
  OK: '-',
  /** No route: no original destination, unknown destination refused, unknown source. */
  NO_ROUTE: 'NR',
  /** No healthy upstream: the service has no endpoints. */
  NO_HEALTHY_UPSTREAM: 'UH',
  /** Upstream connect failed (after trying other endpoints). */
  UPSTREAM_CONNECT_FAILURE: 'UF',
  /** The upstream reset the connection. */
  UPSTREAM_RESET: 'UC',
  /** The downstream (client) reset the connection. */
  DOWNSTREAM_RESET: 'DC',
  /** Authorization policy denied it. */
  DENIED: 'DENY',
  /** A plaintext connection to a pod whose PeerAuthentication is STRICT (mTLS only). */
  MTLS_REQUIRED: 'MTLS_REQUIRED',
  /** Destroyed when a drain deadline passed or the proxy shut down. */
  DRAINED: 'DRAIN',
  /** An HTTP request's route timeout passed before its response was complete (504). */
  UPSTREAM_TIMEOUT: 'UT',
  /** The peer agent refused the tunnel request as malformed or misdirected. */
  BAD_REQUEST: 'BR',
  /** Half-closed (one direction ended) and idle past the timeout: both sides reset. */
  IDLE_TIMEOUT: 'SI',
  /** Refused at accept: a connection cap (per source, or the agent's global one) was reached. */
  OVERLOADED: 'OL',
  /** A RateLimitPolicy's bucket was empty (429, gRPC RESOURCE_EXHAUSTED), Envoy's RL. */
  RATE_LIMITED: 'RL',
  /** A DestinationPolicy's connection pool was full (503 at once), Envoy's UO (upstream overflow). */
  UPSTREAM_OVERFLOW: 'UO',
  /** The route's retries were used up (its attempts, or the destination's retry budget) and the last attempt still failed, Envoy's URX. */
  RETRY_LIMIT_EXCEEDED: 'URX',
  /** A FaultInjection aborted the request, Envoy's FI. */
  FAULT_INJECTED: 'FI',
  /** A FaultInjection delayed the request (it then went on), Envoy's DI. */
  DELAY_INJECTED: 'DI',
} as const;

export type ResponseFlag = (typeof ResponseFlags)[keyof typeof ResponseFlags];
