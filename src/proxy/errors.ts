// Error codes of the proxy. Callers branch on the code, never on the message.

import { WeftError, weftError } from '../core/errors.ts';

export const ProxyErrors = {
  /** A server name (SNI) cannot carry this SPIFFE id, or a server name is not one of ours. */
  BAD_SERVER_NAME: 'WEFT_PROXY_BAD_SERVER_NAME',
  /** An option handed to a proxy component is out of range or malformed. */
  BAD_OPTION: 'WEFT_PROXY_BAD_OPTION',
  /** A TCP connect did not complete within the connect timeout. */
  CONNECT_TIMEOUT: 'WEFT_PROXY_CONNECT_TIMEOUT',
  /** A TCP connect failed (refused, unreachable, reset). */
  CONNECT_FAILED: 'WEFT_PROXY_CONNECT_FAILED',
  /** The work was abandoned because the connection it served went away or was drained. */
  ABORTED: 'WEFT_PROXY_ABORTED',
  /** No local certificate for the source identity: the tunnel cannot be opened. */
  NO_CREDENTIALS: 'WEFT_PROXY_NO_CREDENTIALS',
  /** The tunnel's TLS handshake failed or the peer is not who we asked for. */
  TUNNEL_HANDSHAKE: 'WEFT_PROXY_TUNNEL_HANDSHAKE',
  /** The peer agent answered the CONNECT with a non-200 status. */
  TUNNEL_REFUSED: 'WEFT_PROXY_TUNNEL_REFUSED',
  /** The pooled HTTP/2 session broke before the stream was answered. */
  TUNNEL_BROKEN: 'WEFT_PROXY_TUNNEL_BROKEN',
  /** The tunnel pool is closed. */
  POOL_CLOSED: 'WEFT_PROXY_POOL_CLOSED',
  /** An HTTP/2 upstream refused a stream before processing it (REFUSED_STREAM, or the session was going away). */
  STREAM_REFUSED: 'WEFT_PROXY_STREAM_REFUSED',
  /** A DestinationPolicy connection pool is full (maxConnections): no new upstream connection is opened. */
  POOL_OVERFLOW: 'WEFT_PROXY_POOL_OVERFLOW',
  /** The agent's connection caps refused a new pooled connection (a source's share, or all of them). */
  OVERLOADED: 'WEFT_PROXY_OVERLOADED',
  /** The listener could not bind. */
  LISTEN_FAILED: 'WEFT_PROXY_LISTEN_FAILED',
} as const;

export type ProxyErrorCode = (typeof ProxyErrors)[keyof typeof ProxyErrors];

export const proxyError: (code: ProxyErrorCode, message: string, cause?: unknown) => WeftError = weftError;

/** A WeftError raised when the peer agent answers a CONNECT with `status`. */
export class TunnelRefusedError extends WeftError {
  readonly status: number;

  constructor(status: number, message: string) {
    super(ProxyErrors.TUNNEL_REFUSED, message);
    this.status = status;
  }
}

/** A WeftError for a failed tunnel handshake; `reason` is the metric label. */
export class TunnelHandshakeError extends WeftError {
  readonly reason: string;

  constructor(reason: string, message: string, cause?: unknown) {
    super(ProxyErrors.TUNNEL_HANDSHAKE, message, cause === undefined ? undefined : { cause });
    this.reason = reason;
  }
}
