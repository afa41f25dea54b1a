// Routes compiled per Service port, once per snapshot: which routes attach to the port
// (a Service parentRef, narrowed by port or sectionName), split into the producer group
// (routes in the Service's namespace, for every caller) and one consumer group per other
// namespace (only for callers in that namespace, GEP-1294); each group's matches sorted by
// Gateway API precedence, regular expressions compiled (RE2: linear time, as Envoy), and
// each rule's backends resolved against the snapshot.

import { RE2JS } from 're2js';
import type { MeshService } from './types.ts';
import type {
  RouteRetry,
  BackendObjectRef, GrpcRouteMatch, GrpcRouteObject, HeaderMatch, HttpRouteMatch, HttpRouteObject, RequestMirror, RouteFilter, RouteObject, StringMatchType,
} from './route-types.ts';
import { isServiceParent } from './route-types.ts';
import type { BackendTarget, Forward, RouteRef } from './route-decision.ts';

/** A request as the compiled matches read it (see route-match.ts). */
export interface RequestView {
  readonly method: string;
  /** Path without the query. */
  readonly path: string;
  header(name: string): string | undefined;
  query(name: string): string | undefined;
  readonly grpc: boolean;
  /** From a gRPC `:path` /service/method; undefined otherwise. */
  readonly grpcService: string | undefined;
  readonly grpcMethod: string | undefined;
}

/** A backendRef resolved against the snapshot: a Service port to send to, or why it cannot be. */
export type ResolvedBackend =
  | { readonly valid: true; readonly target: BackendTarget }
  | { readonly valid: false; readonly reason: string };

export interface CompiledBackend {
  readonly weight: number;
  readonly backend: ResolvedBackend;
  readonly filters: readonly RouteFilter[];
}

export interface CompiledRule {
  readonly ref: RouteRef;
  readonly filters: readonly RouteFilter[];
  /** Only those with weight > 0, in spec order. */
  readonly backends: readonly CompiledBackend[];
  readonly totalWeight: number;
  /** The one PathPrefix match's value, for ReplacePrefixMatch. */
  readonly prefix: string | undefined;
  readonly requestTimeoutMs: number | undefined;
  readonly backendRequestTimeoutMs: number | undefined;
  readonly retry: RouteRetry | undefined;
  /** Every RequestMirror filter of the rule and its backends, resolved; undefined: the mirror's backend is invalid. */
  readonly mirrors: ReadonlyMap<RequestMirror, BackendTarget | undefined>;
}

export interface CompiledMatch {
  readonly rule: CompiledRule;
  test(request: RequestView): boolean;
}

export interface RouteGroup {
  readonly kind: 'HTTPRoute' | 'GRPCRoute';
  /** Sorted by precedence: the first whose test passes decides. */
  readonly matches: readonly CompiledMatch[];
  /** The routes in effect (of `kind`), sorted by age then namespace/name. */
  readonly routes: readonly RouteObject[];
}

export interface RouteTable {
  readonly service: MeshService;
  /** The Service port: the "listener port" of redirects. */
  readonly port: number;
  /** Routes in the Service's namespace; undefined when none attaches. */
  readonly producer: RouteGroup | undefined;
  /** Consumer routes by the namespace they live in (and apply to). */
  readonly consumers: ReadonlyMap<string, RouteGroup>;
  /** The decision for a caller no route applies to: the Service itself, unchanged (made once). */
  readonly unrouted: Forward;
}

/** What compileRoutes needs from the snapshot. */
export interface ServiceLookup {
  service(key: string): MeshService | undefined;
}

// ---- attachment ---------------------------------------------------------------------------

/** The Service ports a route's parentRefs attach it to, as `namespace/name:port`. */
export function attachedPorts(route: RouteObject, lookup: ServiceLookup): string[] {
  const out = new Set<string>();
  for (const p of route.parentRefs) {
    if (!isServiceParent(p)) continue;
    const svc = lookup.service(`${p.namespace}/${p.name}`);
    if (svc === undefined) continue;
    for (const sp of svc.ports) {
      if (p.port !== undefined && sp.port !== p.port) continue;
      if (p.sectionName !== undefined && sp.name !== p.sectionName) continue;
      out.add(`${svc.key}:${sp.port}`);
    }
  }
  return [...out];
}

// ---- predicates ---------------------------------------------------------------------------

function stringTest(type: StringMatchType, value: string): (s: string | undefined) => boolean {
  if (type === 'Exact') return (s) => s === value;
  const re = RE2JS.compile(value);
  return (s) => s !== undefined && re.matches(s);
}

/** Element-wise prefix: `/abc` (or `/abc/`) matches `/abc`, `/abc/`, `/abc/x`, never `/abcd`. */
export function prefixMatches(prefix: string, path: string): boolean {
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  return path === p || path.startsWith(`${p}/`) || (p === '' && path.startsWith('/'));
}

function headerTests(headers: readonly HeaderMatch[]): ((r: RequestView) => boolean)[] {
  return headers.map((h) => {
    const t = stringTest(h.type, h.value);
    return (r) => t(r.header(h.name));
  });
}

function httpTest(m: HttpRouteMatch): (r: RequestView) => boolean {
  const tests: ((r: RequestView) => boolean)[] = [];
  const { type, value } = m.path;
  if (type === 'Exact') tests.push((r) => r.path === value);
  else if (type === 'PathPrefix') {
    if (value !== '/') tests.push((r) => prefixMatches(value, r.path));
  } else {
    const t = stringTest('RegularExpression', value);
    tests.push((r) => t(r.path));
  }
  if (m.method !== undefined) tests.push((r) => r.method === m.method);
  tests.push(...headerTests(m.headers));
  for (const q of m.queryParams) {
    const t = stringTest(q.type, q.value);
    tests.push((r) => t(r.query(q.name)));
  }
  return (r) => tests.every((t) => t(r));
}

function grpcTest(m: GrpcRouteMatch): (r: RequestView) => boolean {
  const tests: ((r: RequestView) => boolean)[] = [(r) => r.grpc && r.grpcService !== undefined];
  const mm = m.method;
  if (mm?.service !== undefined) {
    const t = stringTest(mm.type, mm.service);
    tests.push((r) => t(r.grpcService));
  }
  if (mm?.method !== undefined) {
    const t = stringTest(mm.type, mm.method);
    tests.push((r) => t(r.grpcMethod));
  }
  tests.push(...headerTests(m.headers));
  return (r) => tests.every((t) => t(r));
}

// ---- precedence ---------------------------------------------------------------------------

/** Older first; a route without a timestamp counts as newest; then namespace/name. */
export function compareRouteAge(a: RouteObject, b: RouteObject): number {
  const ta = a.creationTimestamp === undefined ? Infinity : Date.parse(a.creationTimestamp);
  const tb = b.creationTimestamp === undefined ? Infinity : Date.parse(b.creationTimestamp);
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = `${a.namespace}/${a.name}`;
  const kb = `${b.namespace}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

// Exact, then PathPrefix, then RegularExpression (whose place the spec leaves open; Istio's
// order), each by characters, longest first; PathPrefix ignores a trailing '/'.
const PATH_RANK = { Exact: 3, PathPrefix: 2, RegularExpression: 1 } as const;

function pathLength(m: HttpRouteMatch): number {
  const v = m.path.value;
  return m.path.type === 'PathPrefix' && v.endsWith('/') ? v.length - 1 : v.length;
}

/** Gateway API's HTTPRoute precedence between two matches; negative when `a` goes first. */
export function compareHttpMatches(a: HttpRouteMatch, b: HttpRouteMatch): number {
  return (PATH_RANK[b.path.type] - PATH_RANK[a.path.type])
    || (pathLength(b) - pathLength(a))
    || (Number(b.method !== undefined) - Number(a.method !== undefined))
    || (b.headers.length - a.headers.length)
    || (b.queryParams.length - a.queryParams.length);
}

/** GRPCRoute precedence: characters of service, then of method, then header matches. */
export function compareGrpcMatches(a: GrpcRouteMatch, b: GrpcRouteMatch): number {
  const len = (s: string | undefined): number => s?.length ?? 0;
  return (len(b.method?.service) - len(a.method?.service))
    || (len(b.method?.method) - len(a.method?.method))
    || (b.headers.length - a.headers.length);
}

// ---- compilation --------------------------------------------------------------------------

function resolveBackend(ref: BackendObjectRef, lookup: ServiceLookup): ResolvedBackend {
  if (!((ref.group === '' || ref.group === 'core') && ref.kind === 'Service')) {
    return { valid: false, reason: `backend kind ${ref.group === '' ? '' : `${ref.group}/`}${ref.kind} is not a Service` };
  }
  const key = `${ref.namespace}/${ref.name}`;
  const svc = lookup.service(key);
  if (svc === undefined) return { valid: false, reason: `backend Service ${key} does not exist` };
  if (ref.port === undefined || !svc.ports.some((p) => p.port === ref.port)) {
    return { valid: false, reason: `backend Service ${key} has no port ${String(ref.port)}` };
  }
  return { valid: true, target: Object.freeze({ serviceKey: key, port: ref.port }) };
}


interface Entry {
  readonly order: number;
  readonly route: RouteObject;
  readonly ruleIndex: number;
  readonly matchIndex: number;
  readonly compiled: CompiledMatch;
  readonly http: HttpRouteMatch | undefined;
  readonly grpc: GrpcRouteMatch | undefined;
}

function compileRule(route: RouteObject, index: number, lookup: ServiceLookup): CompiledRule {
  const rule = route.rules[index];
  if (rule === undefined) throw new Error(`rule ${index} of ${route.name} is missing`);
  const backends = rule.backendRefs.filter((b) => b.weight > 0).map((b): CompiledBackend => Object.freeze({
    weight: b.weight, backend: resolveBackend(b, lookup), filters: b.filters,
  }));
  const mirrors = new Map<RequestMirror, BackendTarget | undefined>();
  for (const f of [...rule.filters, ...rule.backendRefs.flatMap((b) => b.filters)]) {
    if (f.type !== 'RequestMirror') continue;
    const r = resolveBackend(f.requestMirror.backendRef, lookup);
    mirrors.set(f.requestMirror, r.valid ? r.target : undefined);
  }
  const http = route.kind === 'HTTPRoute' ? route.rules[index] : undefined;
  const only = http?.matches.length === 1 ? http.matches[0] : undefined;
  return Object.freeze({
    ref: Object.freeze({ kind: route.kind, namespace: route.namespace, name: route.name, rule: index, ruleName: rule.name }),
    filters: rule.filters, backends: Object.freeze(backends), totalWeight: backends.reduce((n, b) => n + b.weight, 0),
    prefix: only?.path.type === 'PathPrefix' ? only.path.value : undefined,
    requestTimeoutMs: http?.timeouts.requestMs, backendRequestTimeoutMs: http?.timeouts.backendRequestMs, retry: http?.retry ?? (route.kind === 'GRPCRoute' ? route.rules[index]?.retry : undefined), mirrors,
  });
}

/** One group (producer, or one consumer namespace): GRPCRoutes win over HTTPRoutes on a port (GEP-1294). */
function compileGroup(routes: readonly RouteObject[], lookup: ServiceLookup): RouteGroup {
  const grpc = routes.filter((r): r is GrpcRouteObject => r.kind === 'GRPCRoute');
  const kind = grpc.length > 0 ? 'GRPCRoute' : 'HTTPRoute';
  const used = [...(kind === 'GRPCRoute' ? grpc : routes.filter((r): r is HttpRouteObject => r.kind === 'HTTPRoute'))].sort(compareRouteAge);
  const entries: Entry[] = [];
  for (const route of used) {
    route.rules.forEach((_, ri) => {
      const rule = compileRule(route, ri, lookup);
      if (route.kind === 'HTTPRoute') {
        route.rules[ri]?.matches.forEach((m, mi) => {
          entries.push({ order: entries.length, route, ruleIndex: ri, matchIndex: mi, compiled: Object.freeze({ rule, test: httpTest(m) }), http: m, grpc: undefined });
        });
      } else {
        const matches = route.rules[ri]?.matches ?? [];
        const all: readonly GrpcRouteMatch[] = matches.length === 0 ? [{ method: undefined, headers: [] }] : matches;
        all.forEach((m, mi) => {
          entries.push({ order: entries.length, route, ruleIndex: ri, matchIndex: mi, compiled: Object.freeze({ rule, test: grpcTest(m) }), http: undefined, grpc: m });
        });
      }
    });
  }
  // Ties keep `order`: older route, then namespace/name, then rule, then match (spec order).
  entries.sort((a, b) => {
    const byMatch = a.http !== undefined && b.http !== undefined ? compareHttpMatches(a.http, b.http)
      : a.grpc !== undefined && b.grpc !== undefined ? compareGrpcMatches(a.grpc, b.grpc) : 0;
    return byMatch || a.order - b.order;
  });
  return Object.freeze({ kind, matches: Object.freeze(entries.map((e) => e.compiled)), routes: Object.freeze(used) });
}

/**
 * Route tables for every Service port that has a route attached, keyed `namespace/name:port`.
 * Routes are already validated (route-kind.ts); ones attached to no existing Service port
 * are left out (vet and status report them).
 */
export function compileRoutes(routes: readonly RouteObject[], lookup: ServiceLookup): Map<string, RouteTable> {
  const byPort = new Map<string, RouteObject[]>();
  for (const r of routes) {
    for (const key of attachedPorts(r, lookup)) {
      const list = byPort.get(key);
      if (list === undefined) byPort.set(key, [r]);
      else list.push(r);
    }
  }
  const out = new Map<string, RouteTable>();
  for (const [key, attached] of [...byPort].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const colon = key.lastIndexOf(':');
    const service = lookup.service(key.slice(0, colon));
    if (service === undefined) continue;
    const byNs = Map.groupBy(attached, (r) => r.namespace);
    const producer = byNs.get(service.namespace);
    const consumers = new Map<string, RouteGroup>();
    for (const [ns, list] of [...byNs].sort(([a], [b]) => (a < b ? -1 : 1))) if (ns !== service.namespace) consumers.set(ns, compileGroup(list, lookup));
    const port = Number(key.slice(colon + 1));
    out.set(key, Object.freeze({
      service, port, producer: producer === undefined ? undefined : compileGroup(producer, lookup), consumers, unrouted: unroutedForward(service, port),
    }));
  }
  return out;
}

function unroutedForward(service: MeshService, port: number): Forward {
  return Object.freeze({
    kind: 'forward', route: undefined, backend: Object.freeze({ serviceKey: service.key, port }), requestHeaders: [], responseHeaders: [],
    rewrite: undefined, mirrors: [], requestTimeoutMs: undefined, backendRequestTimeoutMs: undefined,
  });
}

/** The table of a Service port with no route attached: requests go to the Service itself. */
export function emptyRouteTable(service: MeshService, port: number): RouteTable {
  return Object.freeze({ service, port, producer: undefined, consumers: new Map(), unrouted: unroutedForward(service, port) });
}
