// The contract between route matching (model/route-match.ts, pure) and the HTTP layer
// (proxy/http/): what the layer tells the matcher about one request, and what it gets
// back. The layer calls `decideRoute(state.routeTable(serviceKey, port), request, random)`
// once per request and carries out the decision; it never looks at routes itself.

import type { HeaderModifier, RedirectStatus, RouteKind, RouteRetry } from './route-types.ts';

/** Request headers as node:http and node:http2 give them: lowercase names; repeated headers joined or as a list. */
export type RequestHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

export interface RouteRequest {
  /** Upper case, e.g. `GET`. */
  readonly method: string;
  /** The request target as sent: path plus `?query` (`:path` in HTTP/2). */
  readonly path: string;
  readonly headers: RequestHeaders;
  /** Host header or `:authority`, port included when the client sent one. */
  readonly authority: string | undefined;
  /** `content-type: application/grpc...`: GRPCRoutes match only these, HTTPRoutes match both. */
  readonly grpc: boolean;
  /** Namespace of the calling workload (consumer routes); undefined when the source is not a known workload. */
  readonly sourceNamespace: string | undefined;
}

/** Which route and rule decided, for the access log and metrics (`route` label). */
export interface RouteRef {
  readonly kind: RouteKind;
  readonly namespace: string;
  readonly name: string;
  /** Index of the rule in spec.rules. */
  readonly rule: number;
  /** spec.rules[].name when set. */
  readonly ruleName: string | undefined;
}

/** A Service port to send to: the balancer picks an endpoint from `state.endpoints(serviceKey, port)`. */
export interface BackendTarget {
  /** `namespace/name` of the Service. */
  readonly serviceKey: string;
  /** The Service port (not the target port). */
  readonly port: number;
}

export interface Rewrite {
  /** The new request target (path plus the original query), when a URLRewrite changes the path. */
  readonly path: string | undefined;
  /** The new Host / `:authority`, when a URLRewrite sets a hostname. */
  readonly authority: string | undefined;
}

export interface Forward {
  readonly kind: 'forward';
  /** Undefined when no route is attached to the Service port: the request goes to the Service itself. */
  readonly route: RouteRef | undefined;
  readonly backend: BackendTarget;
  /** Applied in order (rule filters, then the chosen backend's), before sending. */
  readonly requestHeaders: readonly HeaderModifier[];
  /** Applied in order to the response before it goes back to the client. */
  readonly responseHeaders: readonly HeaderModifier[];
  readonly rewrite: Rewrite | undefined;
  /** Copies to send and forget (responses ignored); the draw for each mirror's share is already made. */
  readonly mirrors: readonly BackendTarget[];
  /** timeouts.request: 504 when no response is complete in time; undefined: none. */
  readonly requestTimeoutMs: number | undefined;
  /** timeouts.backendRequest: per request to a backend; undefined: none. */
  readonly backendRequestTimeoutMs: number | undefined;
  /** The rule's GEP-1731 retry; undefined: none (only connect failures go to another endpoint). */
  readonly retry?: RouteRetry | undefined;
  /** FaultInjections (`namespace/name`) the rule's and backend's ExtensionRef filters name, in order. */
  readonly faults?: readonly string[] | undefined;
}

export interface Redirect {
  readonly kind: 'redirect';
  readonly route: RouteRef;
  readonly status: RedirectStatus;
  /** Absolute URL for the Location header. */
  readonly location: string;
  readonly responseHeaders: readonly HeaderModifier[];
}

/**
 * Answered by the proxy itself, as Gateway API says: 404 when routes are attached but none
 * matches; 500 for a rule whose chosen backend is invalid (unknown Service or port, a kind
 * weft cannot send to, weights summing to 0, no backend at all, an ExtensionRef weft does
 * not implement). gRPC requests get `grpcStatus` (UNIMPLEMENTED 12 for 404, UNAVAILABLE 14
 * for invalid backends) in a trailers-only response with HTTP 200.
 */
export interface Reject {
  readonly kind: 'reject';
  readonly route: RouteRef | undefined;
  readonly status: 404 | 500;
  readonly grpcStatus: number;
  /** For the access log. */
  readonly reason: string;
  readonly responseHeaders: readonly HeaderModifier[];
}

export type RouteDecision = Forward | Redirect | Reject;

export const GRPC_UNIMPLEMENTED = 12;
export const GRPC_UNAVAILABLE = 14;
