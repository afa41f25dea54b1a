// Gateway API HTTPRoute and GRPCRoute (gateway.networking.k8s.io/v1) as the model keeps
// them: validated, defaults filled in (weight 1, PathPrefix "/", redirect 302, the route's
// namespace on references), header names lowercased, durations in milliseconds. Plain
// frozen data, shipped to agents as is; route-table.ts compiles it once per snapshot.

export const GATEWAY_API_VERSION = 'gateway.networking.k8s.io/v1';
export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
/** controllerName in the route status weft writes (Gateway API: DOMAIN/PATH). */
export const WEFT_CONTROLLER_NAME = 'weft.dev/mesh';

export type RouteKind = 'HTTPRoute' | 'GRPCRoute';

/** A spec.parentRefs entry, defaults applied (group gateway.networking.k8s.io, kind Gateway, the route's namespace). */
export interface RouteParentRef {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** For a Service parent: the Service port the route attaches to (all ports when neither this nor sectionName is set). */
  readonly port: number | undefined;
  /** For a Service parent: the name of the Service port. */
  readonly sectionName: string | undefined;
}

export type StringMatchType = 'Exact' | 'RegularExpression';

export interface HeaderMatch {
  /** Lowercased (header names are case-insensitive); only the first entry of a name counts. */
  readonly name: string;
  readonly type: StringMatchType;
  readonly value: string;
}

export interface QueryParamMatch {
  /** Case-sensitive, as the spec says. */
  readonly name: string;
  readonly type: StringMatchType;
  readonly value: string;
}

export interface PathMatch {
  readonly type: 'Exact' | 'PathPrefix' | 'RegularExpression';
  readonly value: string;
}

export interface HttpRouteMatch {
  readonly path: PathMatch;
  readonly headers: readonly HeaderMatch[];
  readonly queryParams: readonly QueryParamMatch[];
  /** Upper case; undefined matches every method. */
  readonly method: string | undefined;
}

export interface GrpcMethodMatch {
  readonly type: StringMatchType;
  /** Fully qualified service (`pkg.Service`); undefined matches any. */
  readonly service: string | undefined;
  readonly method: string | undefined;
}

export interface GrpcRouteMatch {
  /** Undefined matches every service and method. */
  readonly method: GrpcMethodMatch | undefined;
  readonly headers: readonly HeaderMatch[];
}

export interface HeaderValue {
  /** Lowercased. */
  readonly name: string;
  readonly value: string;
}

/** RequestHeaderModifier / ResponseHeaderModifier: at most one action per header name. */
export interface HeaderModifier {
  /** Replaces every value of the header. */
  readonly set: readonly HeaderValue[];
  /** Appends a value (a header already present keeps its values). */
  readonly add: readonly HeaderValue[];
  /** Lowercased names. */
  readonly remove: readonly string[];
}

export type PathModifier =
  | { readonly type: 'ReplaceFullPath'; readonly replaceFullPath: string }
  | { readonly type: 'ReplacePrefixMatch'; readonly replacePrefixMatch: string };

export type RedirectStatus = 301 | 302 | 303 | 307 | 308;

export interface RequestRedirect {
  readonly scheme: 'http' | 'https' | undefined;
  readonly hostname: string | undefined;
  readonly path: PathModifier | undefined;
  readonly port: number | undefined;
  readonly statusCode: RedirectStatus;
}

export interface UrlRewrite {
  readonly hostname: string | undefined;
  readonly path: PathModifier | undefined;
}

/** A reference to a Service port (or, when group/kind say so, to something weft cannot send to). */
export interface BackendObjectRef {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** The Service port (not the target port); required for a Service. */
  readonly port: number | undefined;
}

export interface RequestMirror {
  readonly backendRef: BackendObjectRef;
  /** The share of requests mirrored, numerator/denominator (percent p is p/100); 1/1 by default. */
  readonly numerator: number;
  readonly denominator: number;
}

/** An `ExtensionRef` filter: a weft.dev FaultInjection is applied; any other kind fails its requests closed (500). */
export interface ExtensionRef {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
}

export type RouteFilter =
  | { readonly type: 'RequestHeaderModifier'; readonly requestHeaderModifier: HeaderModifier }
  | { readonly type: 'ResponseHeaderModifier'; readonly responseHeaderModifier: HeaderModifier }
  | { readonly type: 'RequestRedirect'; readonly requestRedirect: RequestRedirect }
  | { readonly type: 'URLRewrite'; readonly urlRewrite: UrlRewrite }
  | { readonly type: 'RequestMirror'; readonly requestMirror: RequestMirror }
  | { readonly type: 'ExtensionRef'; readonly extensionRef: ExtensionRef };

export interface RouteBackendRef extends BackendObjectRef {
  /** 0 .. 1,000,000; 0 sends nothing to this backend. */
  readonly weight: number;
  /** Applied only to requests sent to this backend, after the rule's filters. */
  readonly filters: readonly RouteFilter[];
}

export interface RouteTimeouts {
  /** timeouts.request: the whole transaction; undefined when unset or 0s (no timeout). */
  readonly requestMs: number | undefined;
  /** timeouts.backendRequest: one request to a backend; undefined when unset or 0s. */
  readonly backendRequestMs: number | undefined;
}

/**
 * GEP-1731 `retry`, defaults filled in: up to `attempts` retries after the first attempt, on
 * the HTTP statuses `codes` (and on connect failures and resets before a response), waiting at
 * least `backoffMs` before the first, doubling each time; the destination's retry budget caps them.
 */
export interface RouteRetry {
  readonly attempts: number;
  readonly codes: readonly number[];
  readonly backoffMs: number;
  /** gRPC status codes retried (a GRPCRoute's `retry.linkerd.io/grpc`); absent: none. */
  readonly grpcCodes?: readonly number[];
}

/** Linkerd's GRPCRoute retry annotations (GEP-1731 has no gRPC form): the status names to retry, and how many retries. */
export const GRPC_RETRY_ANNOTATION = 'retry.linkerd.io/grpc';
export const RETRY_LIMIT_ANNOTATION = 'retry.linkerd.io/limit';
/** Linkerd's default limit: one retry. */
export const DEFAULT_GRPC_RETRY_LIMIT = 1;

/** Unset fields: 2 attempts (Istio's), the gateway errors 502, 503 and 504 (Envoy's gateway-error), 25 ms (Envoy's base interval). */
export const DEFAULT_ROUTE_RETRY: RouteRetry = Object.freeze({ attempts: 2, codes: Object.freeze([502, 503, 504]), backoffMs: 25 });

interface RuleCommon {
  readonly name: string | undefined;
  readonly filters: readonly RouteFilter[];
  readonly backendRefs: readonly RouteBackendRef[];
}

export interface HttpRouteRule extends RuleCommon {
  /** Never empty: no matches in the spec means one PathPrefix "/" match. */
  readonly matches: readonly HttpRouteMatch[];
  readonly timeouts: RouteTimeouts;
  /** GEP-1731 `retry`; undefined when the rule sets none. */
  readonly retry?: RouteRetry | undefined;
}

export interface GrpcRouteRule extends RuleCommon {
  /** Empty matches every gRPC request. */
  readonly matches: readonly GrpcRouteMatch[];
  /** From the route's retry.linkerd.io annotations; undefined when it sets none. */
  readonly retry?: RouteRetry | undefined;
}

interface RouteCommon {
  readonly name: string;
  readonly namespace: string;
  /** metadata.creationTimestamp (RFC 3339): older routes win ties. Undefined in manifests that leave it out. */
  readonly creationTimestamp: string | undefined;
  /** metadata.generation, for the status' observedGeneration. */
  readonly generation: number | undefined;
  readonly parentRefs: readonly RouteParentRef[];
  /** Kept for status and vet; a mesh ignores hostnames (GEP-1294). */
  readonly hostnames: readonly string[];
}

export interface HttpRouteObject extends RouteCommon {
  readonly kind: 'HTTPRoute';
  readonly rules: readonly HttpRouteRule[];
}

export interface GrpcRouteObject extends RouteCommon {
  readonly kind: 'GRPCRoute';
  readonly rules: readonly GrpcRouteRule[];
}

export type RouteObject = HttpRouteObject | GrpcRouteObject;

/** `Kind/namespace/name`, the key of a route in resources, status and logs. */
export function routeKey(r: { readonly kind: RouteKind; readonly namespace: string; readonly name: string }): string {
  return `${r.kind}/${r.namespace}/${r.name}`;
}

/** A parentRef that names a Service (group "" or "core", kind Service): the only parents a mesh serves. */
export function isServiceParent(p: RouteParentRef): boolean {
  return (p.group === '' || p.group === 'core') && p.kind === 'Service';
}
