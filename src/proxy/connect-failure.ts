// What a failed upstream connect means for the connection being served: stop with a given
// ending (drained, client gone, the destination agent refused), or try another endpoint,
// counting the failure against this one unless it was ours (no local certificate). Pure.

import { describeError, isWeftError } from '../core/errors.ts';
import { ProxyErrors, TunnelRefusedError } from './errors.ts';
import { ResponseFlags } from './flags.ts';
import type { Ending } from './listener.ts';

export interface ConnectFailureContext {
  /** The error the upstream connector rejected with. */
  readonly error: unknown;
  /** The connection was drained or ended meanwhile. */
  readonly drained: boolean;
  /** The client went away meanwhile. */
  readonly clientGone: boolean;
}

export type ConnectFailure =
  /** End the connection with `ending`; `security` is what telemetry records for it. */
  | { readonly kind: 'stop'; readonly ending: Ending; readonly security: 'mutual_tls' | 'unknown' }
  /** Try another endpoint; `ending` stands if none is left. `eject` feeds outlier detection. */
  | { readonly kind: 'next'; readonly ending: Ending; readonly eject: boolean };

export function classifyConnectFailure(c: ConnectFailureContext): ConnectFailure {
  if (c.drained) return { kind: 'stop', ending: [ResponseFlags.DRAINED, 'drained while connecting'], security: 'unknown' };
  if (c.clientGone) return { kind: 'stop', ending: [ResponseFlags.DOWNSTREAM_RESET, 'client went away while connecting'], security: 'unknown' };
  const err = c.error;
  if (err instanceof TunnelRefusedError && err.status === 403) {
    return { kind: 'stop', ending: [ResponseFlags.DENIED, `the destination agent denied it: ${err.message}`], security: 'mutual_tls' };
  }
  // The destination pod's L4 rate limit: its agent's budget is spent, another try would only draw again.
  if (err instanceof TunnelRefusedError && err.status === 429) {
    return { kind: 'stop', ending: [ResponseFlags.RATE_LIMITED, `the destination agent rate limited it: ${err.message}`], security: 'mutual_tls' };
  }
  if (err instanceof TunnelRefusedError && err.status === 400) {
    return { kind: 'stop', ending: [ResponseFlags.BAD_REQUEST, err.message], security: 'mutual_tls' };
  }
  // The caps say no for every endpoint alike: nothing to try elsewhere, nothing to blame on one.
  if (isWeftError(err, ProxyErrors.OVERLOADED)) return { kind: 'stop', ending: [ResponseFlags.OVERLOADED, err.message], security: 'unknown' };
  // A missing local certificate says nothing about the endpoint.
  const eject = !isWeftError(err, ProxyErrors.NO_CREDENTIALS);
  return { kind: 'next', ending: [ResponseFlags.UPSTREAM_CONNECT_FAILURE, describeError(err)], eject };
}

/** Methods RFC 9110 section 9.2.2 calls idempotent. */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** A pooled connection found closed when a request was put on it (the keep-alive race). */
const STALE_CONNECTION: ReadonlySet<string> = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED']);

/**
 * True when a request that got no response and sent no body byte may go again: a stream the
 * HTTP/2 server refused unprocessed (any method), or an idempotent request on a pooled
 * connection that turned out closed (RFC 9112 section 9.3.1 lets a client retry those).
 */
export function isRetriableReset(err: unknown, method: string): boolean {
  if (isWeftError(err, ProxyErrors.STREAM_REFUSED)) return true;
  const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
  return code !== undefined && STALE_CONNECTION.has(code) && IDEMPOTENT.has(method);
}

const CONNECT_PHASE: ReadonlySet<string> = new Set([
  ProxyErrors.CONNECT_FAILED, ProxyErrors.CONNECT_TIMEOUT, ProxyErrors.NO_CREDENTIALS, ProxyErrors.TUNNEL_HANDSHAKE,
  ProxyErrors.TUNNEL_REFUSED, ProxyErrors.TUNNEL_BROKEN, ProxyErrors.POOL_CLOSED,
]);

/** True when `err` comes from connecting (nothing was sent): another endpoint may be tried. */
export function isConnectError(err: unknown): boolean {
  return isWeftError(err) && CONNECT_PHASE.has(err.code);
}
