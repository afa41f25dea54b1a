// What the HTTP layer needs from the rest of weft, declared here (the consumer): the route
// decision for one request (model/route-match.ts decides; until routes exist every request
// goes to the Service it was sent to), the mesh lookups the balancer needs, and a request
// observer (telemetry). The route shapes are the subset of model/route-decision.ts the layer
// carries out, so the model's decision is assignable to them.

import type { ServiceAtVip } from '../../model/state.ts';
import type { Endpoint, MeshService, Workload } from '../../model/types.ts';
import type { PeerRef, ServiceRef } from '../contracts.ts';

/** Request headers as node:http and node:http2 give them: lowercase names. */
export type RequestHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/** What route matching is told about one request. */
export interface RouteRequest {
  /** Upper case, e.g. `GET`. */
  readonly method: string;
  /** The request target as sent: path plus `?query`. */
  readonly path: string;
  readonly headers: RequestHeaders;
  /** Host header or `:authority`. */
  readonly authority: string | undefined;
  /** `content-type: application/grpc...`. */
  readonly grpc: boolean;
  /** Namespace of the calling workload (consumer routes). */
  readonly sourceNamespace: string | undefined;
}

export interface RouteRef {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly rule: number;
}

export interface HeaderValue {
  /** Lowercased. */
  readonly name: string;
  readonly value: string;
}

/** RequestHeaderModifier / ResponseHeaderModifier. */
export interface HeaderModifier {
  readonly set: readonly HeaderValue[];
  readonly add: readonly HeaderValue[];
  /** Lowercased names. */
  readonly remove: readonly string[];
}

/** A Service port to send to; the balancer picks one of its endpoints. */
export interface BackendTarget {
  /** `namespace/name` */
  readonly serviceKey: string;
  /** The Service port (not the target port). */
  readonly port: number;
}

export interface Forward {
  readonly kind: 'forward';
  /** Undefined: no route attached; the request goes to the Service it was sent to. */
  readonly route: RouteRef | undefined;
  readonly backend: BackendTarget;
  readonly requestHeaders: readonly HeaderModifier[];
  readonly responseHeaders: readonly HeaderModifier[];
  readonly rewrite: { readonly path: string | undefined; readonly authority: string | undefined } | undefined;
  /** Fire-and-forget copies. */
  readonly mirrors: readonly BackendTarget[];
  /** 504 when no response is complete in time. */
  readonly requestTimeoutMs: number | undefined;
  /** Per attempt to a backend. */
  readonly backendRequestTimeoutMs: number | undefined;
  /** GEP-1731 retry (the retry step carries it out); undefined: none. */
  readonly retry?: { readonly attempts: number; readonly codes: readonly number[]; readonly backoffMs: number; readonly grpcCodes?: readonly number[] } | undefined;
  /** FaultInjections (`namespace/name`) to apply, in order (the fault step). */
  readonly faults?: readonly string[] | undefined;
}

export interface Redirect {
  readonly kind: 'redirect';
  readonly route: RouteRef;
  readonly status: number;
  readonly location: string;
  readonly responseHeaders: readonly HeaderModifier[];
}

/** Answered by the proxy itself (404 no route matched, 500 invalid backend). */
export interface Reject {
  readonly kind: 'reject';
  readonly route: RouteRef | undefined;
  readonly status: number;
  readonly grpcStatus: number;
  readonly reason: string;
  readonly responseHeaders: readonly HeaderModifier[];
}

export type RouteDecision = Forward | Redirect | Reject;

/** Decides where one request goes; pure over the current mesh state. */
export type RouteDecider = (service: ServiceAtVip, request: RouteRequest) => RouteDecision;

/** The route every request takes while no route is attached: the Service itself. */
export function defaultRoute(service: ServiceAtVip): Forward {
  return {
    kind: 'forward', route: undefined, backend: { serviceKey: service.service.key, port: service.port.port },
    requestHeaders: [], responseHeaders: [], rewrite: undefined, mirrors: [], requestTimeoutMs: undefined, backendRequestTimeoutMs: undefined,
  };
}

/** The mesh lookups the HTTP layer makes per request. */
export interface HttpMeshView {
  workloadByIp(ip: string): Workload | undefined;
  /** A Service by `namespace/name` (a route's backend). */
  service(key: string): MeshService | undefined;
  /** Endpoints of a Service port (the Service port, not the target port). */
  endpoints(serviceKey: string, port: number): readonly Endpoint[];
  nodeAddress(node: string): string | undefined;
}

// ---- Telemetry: what the HTTP layer reports about each request ----

export interface RequestDescription {
  readonly reporter: 'source' | 'destination';
  readonly source: PeerRef;
  readonly destination: PeerRef;
  readonly service: ServiceRef | undefined;
  readonly security: 'mutual_tls' | 'none' | 'unknown';
  /** `http`, `grpc` (content-type application/grpc), as Istio's request_protocol. */
  readonly protocol: 'http' | 'grpc';
  readonly method: string;
  readonly authority: string | undefined;
  readonly path: string;
  /** `namespace/name` of the route that decided, when one did. */
  readonly route: string | undefined;
}

export interface RequestOutcome {
  /** The status the client got (0 when it got none: reset before a response). */
  readonly status: number;
  /** grpc-status from the trailers or a trailers-only response, when gRPC. */
  readonly grpcStatus: string | undefined;
  /** A ResponseFlags value, '-' when none. */
  readonly flags: string;
  readonly requestBytes: number;
  readonly responseBytes: number;
  /** `ip:port` of the endpoint that answered, when one did. */
  readonly upstream: string | undefined;
  /** Attempts beyond the first (connect failures retried on another endpoint). */
  readonly retries: number;
  readonly detail?: string;
}

/** The request as it arrived here, for an observer that reads headers (tracing continues their context). */
export interface IncomingRequest {
  readonly reporter: 'source' | 'destination';
  readonly method: string;
  readonly path: string;
  readonly authority: string | undefined;
  readonly headers: RequestHeaders;
}

/** Trace headers for the request sent on: `remove` these first, then `set` these. */
export interface OutgoingTraceHeaders {
  readonly set: Readonly<Record<string, string>>;
  readonly remove: readonly string[];
}

/** One record per request, written once. */
export interface RequestRecord {
  /** Who and what, once the destination is known (the first call wins; finish fills in if never called). */
  describe(description: RequestDescription): void;
  finish(outcome: RequestOutcome): void;
  /** The trace context to send on with the request; undefined (or absent) when not traced. */
  traceHeaders?(): OutgoingTraceHeaders | undefined;
}

export interface RequestObserver {
  /** Called when a request's head has arrived; the clock starts here. */
  request(incoming: IncomingRequest): RequestRecord;
}

export const NO_REQUEST_TELEMETRY: RequestObserver = Object.freeze({
  request: (): RequestRecord => NO_REQUEST_RECORD,
});

const NO_REQUEST_RECORD: RequestRecord = Object.freeze({
  describe: (): void => undefined,
  finish: (): void => undefined,
});
