// Answers the proxy gives itself (no route, no endpoint, denied, timed out, ...): a short
// text body for HTTP, a trailers-only response (HTTP 200, grpc-status, grpc-message) for
// gRPC, as gRPC's HTTP/2 protocol asks. The status to gRPC code table is gRPC's own
// (doc/http-grpc-status-mapping.md). Envoy's local reply bodies, so users recognise them.

import type { Exchange } from './exchange.ts';
import { applyHeaderModifiers, type OutHeaders } from './headers.ts';

export const GrpcStatus = {
  OK: 0, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13,
  UNAVAILABLE: 14, UNAUTHENTICATED: 16,
} as const;

/** gRPC's mapping of an HTTP status with no grpc-status of its own. */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400: return GrpcStatus.INTERNAL;
    case 401: return GrpcStatus.UNAUTHENTICATED;
    case 403: return GrpcStatus.PERMISSION_DENIED;
    case 404: return GrpcStatus.UNIMPLEMENTED;
    case 429: case 502: case 503: return GrpcStatus.UNAVAILABLE;
    case 504: return GrpcStatus.DEADLINE_EXCEEDED;
    default: return GrpcStatus.UNKNOWN;
  }
}

export interface LocalReply {
  readonly status: number;
  /** A ResponseFlags value for the record. */
  readonly flags: string;
  /** The body text, also the grpc-message. */
  readonly message: string;
  /** For the access log. */
  readonly detail?: string;
  readonly grpcStatus?: number;
  readonly headers?: OutHeaders;
}

/** Sends `r` unless a response already started (then the request is reset). */
export function sendLocalReply(x: Exchange, r: LocalReply): void {
  x.flags = r.flags;
  x.detail = r.detail ?? r.message;
  const modifiers = x.decision?.responseHeaders ?? [];
  if (x.sink.started) {
    x.sink.abort();
    return;
  }
  if (x.request.grpc) {
    const code = r.grpcStatus ?? grpcStatusForHttp(r.status);
    x.status = 200;
    x.grpcStatus = String(code);
    const headers = applyHeaderModifiers({
      ...r.headers, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(r.message),
    }, modifiers);
    x.sink.start({ status: 200, headers, endOfStream: true });
    x.sink.end(undefined);
    return;
  }
  const body = Buffer.from(r.message);
  x.status = r.status;
  const headers = applyHeaderModifiers({
    ...r.headers, 'content-type': 'text/plain', 'content-length': String(body.length),
  }, modifiers);
  const head = x.request.method === 'HEAD' || r.status === 204 || r.status === 304;
  x.sink.start({ status: r.status, headers, endOfStream: head || body.length === 0 });
  if (!head && body.length > 0) x.sink.write(body);
  x.sink.end(undefined);
}
