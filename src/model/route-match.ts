// The per-request routing decision: pure over a compiled RouteTable (route-table.ts) and
// one request head. Picks the route group (the caller namespace's consumer routes, else the
// producer routes), the first match by precedence, then the rule's action: a redirect, or
// a weighted backend with the header edits, rewrite, mirrors and timeouts to apply; 404
// when routes are attached but none matches, 500 for a rule that cannot forward.
// `random` (0 <= x < 1) is the only source of chance, so tests can fix it; the weighted
// backend choice draws from `weightDraw` (by default `random` too). The proxy passes
// spreadDraws: per rule a sequence that covers [0, 1) evenly (a golden-ratio rotation from a
// random start), so an 80/20 split is 80/20 within a request or two over any run of requests,
// and over any periodic subsequence of them (every other request, say), where independent draws
// stray by sqrt(n) (over 500 requests, +-5% is missed once in 200 runs).

import type { HeaderModifier, PathModifier, RequestRedirect, RouteFilter, UrlRewrite } from './route-types.ts';
import type { BackendTarget, Forward, Redirect, Reject, RequestHeaders, Rewrite, RouteDecision, RouteRef, RouteRequest } from './route-decision.ts';
import { GRPC_UNAVAILABLE, GRPC_UNIMPLEMENTED } from './route-decision.ts';
import type { CompiledRule, RequestView, RouteTable } from './route-table.ts';
import type { MeshState, ServiceAtVip } from './state.ts';
import { EvenDraws } from '../core/even-draws.ts';
import { WEFT_API_VERSION } from './types.ts';

const WEFT_GROUP = WEFT_API_VERSION.split('/')[0];

function decodeComponent(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // a malformed escape is compared as sent
  }
}

/** First value of each query parameter, percent-decoded (repeated parameters: the first counts, as the spec recommends). */
export function parseQuery(query: string): Map<string, string> {
  const out = new Map<string, string>();
  if (query === '') return out;
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = decodeComponent(eq < 0 ? pair : pair.slice(0, eq));
    if (!out.has(name)) out.set(name, eq < 0 ? '' : decodeComponent(pair.slice(eq + 1)));
  }
  return out;
}

function headerValue(headers: RequestHeaders, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.join(',');
}

/** The host part of an authority (`host`, `host:port`, `[v6]:port`). */
export function authorityHost(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end < 0 ? authority : authority.slice(0, end + 1);
  }
  const colon = authority.lastIndexOf(':');
  return colon < 0 ? authority : authority.slice(0, colon);
}

export function requestView(req: RouteRequest): RequestView {
  const q = req.path.indexOf('?');
  const path = q < 0 ? req.path : req.path.slice(0, q);
  let query: Map<string, string> | undefined;
  const grpcPath = req.grpc ? /^\/([^/]+)\/([^/]+)$/.exec(path) : null;
  return {
    method: req.method,
    path,
    grpc: req.grpc,
    grpcService: grpcPath?.[1],
    grpcMethod: grpcPath?.[2],
    header: (name) => headerValue(req.headers, name) ?? (name === 'host' ? req.authority : undefined),
    query: (name) => (query ??= parseQuery(q < 0 ? '' : req.path.slice(q + 1))).get(name),
  };
}

/**
 * Gateway API's path modifiers. ReplacePrefixMatch swaps whole path elements of the matched
 * prefix (`/foo` -> `/xyz`: `/foo/bar` -> `/xyz/bar`, `/foo` -> `/xyz`, and with an empty
 * or `/` replacement `/foo/bar` -> `/bar`, `/foo` -> `/`).
 */
export function modifyPath(path: string, modifier: PathModifier, prefix: string | undefined): string {
  if (modifier.type === 'ReplaceFullPath') return modifier.replaceFullPath === '' ? '/' : modifier.replaceFullPath;
  const p = prefix === undefined ? '' : prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const rest = path.slice(p.length);
  const repl = modifier.replacePrefixMatch.endsWith('/') ? modifier.replacePrefixMatch.slice(0, -1) : modifier.replacePrefixMatch;
  const out = repl + rest;
  return out === '' ? '/' : out.startsWith('/') ? out : `/${out}`;
}

function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q) };
}

const WELL_KNOWN_PORT = { http: 80, https: 443 } as const;

/** The Location of a RequestRedirect: scheme, host and port from the filter or the request, the path modified, the query kept. */
export function redirectLocation(r: RequestRedirect, req: RouteRequest, prefix: string | undefined, listenerPort: number, fallbackHost: string): string {
  const scheme = r.scheme ?? 'http';
  const host = r.hostname ?? (req.authority === undefined || req.authority === '' ? fallbackHost : authorityHost(req.authority));
  // No port given: the scheme's well-known port when the filter sets a scheme, else the listener (Service) port.
  const port = r.port ?? (r.scheme !== undefined ? WELL_KNOWN_PORT[r.scheme] : listenerPort);
  const { path, query } = splitTarget(req.path);
  const newPath = r.path === undefined ? path : modifyPath(path, r.path, prefix);
  const showPort = port !== WELL_KNOWN_PORT[scheme];
  return `${scheme}://${host}${showPort ? `:${port}` : ''}${newPath}${query}`;
}

function rewriteOf(r: UrlRewrite, req: RouteRequest, prefix: string | undefined): Rewrite {
  const { path, query } = splitTarget(req.path);
  return Object.freeze({ path: r.path === undefined ? undefined : modifyPath(path, r.path, prefix) + query, authority: r.hostname });
}

function reject(route: RouteRef | undefined, status: 404 | 500, reason: string, responseHeaders: readonly HeaderModifier[] = []): Reject {
  return Object.freeze({ kind: 'reject', route, status, grpcStatus: status === 404 ? GRPC_UNIMPLEMENTED : GRPC_UNAVAILABLE, reason, responseHeaders });
}

/** Carries out the filters of one rule (then of the chosen backend) for one request. */
function act(rule: CompiledRule, table: RouteTable, req: RouteRequest, random: () => number, weightDraw: WeightDraw | undefined): RouteDecision {
  const ref = rule.ref;
  const responseHeaders: HeaderModifier[] = [];
  const requestHeaders: HeaderModifier[] = [];
  const mirrors: BackendTarget[] = [];
  let rewrite: Rewrite | undefined;
  let redirect: RequestRedirect | undefined;
  let extension: string | undefined;
  const faults: string[] = [];
  const apply = (filters: readonly RouteFilter[]): void => {
    for (const f of filters) {
      switch (f.type) {
        case 'RequestHeaderModifier': requestHeaders.push(f.requestHeaderModifier); break;
        case 'ResponseHeaderModifier': responseHeaders.push(f.responseHeaderModifier); break;
        case 'URLRewrite': rewrite = rewriteOf(f.urlRewrite, req, rule.prefix); break;
        case 'RequestRedirect': redirect = f.requestRedirect; break;
        case 'RequestMirror': {
          const m = f.requestMirror;
          if (m.numerator === 0 || random() * m.denominator >= m.numerator) break;
          // An unresolvable mirror is dropped (its route's ResolvedRefs says why); the request still goes on.
          const target = rule.mirrors.get(m);
          if (target !== undefined) mirrors.push(target);
          break;
        }
        case 'ExtensionRef':
          // A weft.dev FaultInjection in the route's namespace is carried out by the caller's agent.
          if (f.extensionRef.group === WEFT_GROUP && f.extensionRef.kind === 'FaultInjection') faults.push(`${ref.namespace}/${f.extensionRef.name}`);
          else extension ??= `${f.extensionRef.group}/${f.extensionRef.kind} ${f.extensionRef.name}`;
          break;
      }
    }
  };
  const fallbackHost = `${table.service.name}.${table.service.namespace}`;
  // An ExtensionRef weft cannot run fails the request (the spec: never skip it); a redirect answers at once.
  const answered = (): RouteDecision | undefined => {
    if (extension !== undefined) return reject(ref, 500, `ExtensionRef filter ${extension} is not implemented by weft`, responseHeaders);
    if (redirect !== undefined) return redirectDecision(ref, redirect, req, rule.prefix, table.port, fallbackHost, responseHeaders);
    return undefined;
  };
  apply(rule.filters);
  const early = answered();
  if (early !== undefined) return early;
  if (rule.totalWeight === 0) {
    return reject(ref, 500, 'the rule has no backendRef with a weight above 0', responseHeaders);
  }
  let draw = (weightDraw === undefined ? random() : weightDraw(rule)) * rule.totalWeight;
  let chosen = rule.backends[rule.backends.length - 1];
  for (const b of rule.backends) {
    if (draw < b.weight) {
      chosen = b;
      break;
    }
    draw -= b.weight;
  }
  if (chosen === undefined) return reject(ref, 500, 'no backend', responseHeaders);
  if (!chosen.backend.valid) return reject(ref, 500, chosen.backend.reason, responseHeaders);
  apply(chosen.filters);
  const late = answered();
  if (late !== undefined) return late;
  const forward: Forward = {
    kind: 'forward', route: ref, backend: chosen.backend.target, requestHeaders: Object.freeze(requestHeaders), responseHeaders: Object.freeze(responseHeaders),
    rewrite, mirrors: Object.freeze(mirrors), requestTimeoutMs: rule.requestTimeoutMs, backendRequestTimeoutMs: rule.backendRequestTimeoutMs,
    ...(rule.retry === undefined ? {} : { retry: rule.retry }), ...(faults.length === 0 ? {} : { faults: Object.freeze(faults) }),
  };
  return Object.freeze(forward);
}

function redirectDecision(
  route: RouteRef, r: RequestRedirect, req: RouteRequest, prefix: string | undefined, port: number, fallbackHost: string, responseHeaders: readonly HeaderModifier[],
): Redirect {
  return Object.freeze({ kind: 'redirect', route, status: r.statusCode, location: redirectLocation(r, req, prefix, port, fallbackHost), responseHeaders: Object.freeze([...responseHeaders]) });
}

/**
 * The decision for one request to a Service port. With no route attached (or none for the
 * caller's group), the request goes to the Service itself, unchanged.
 */
export function decideRoute(table: RouteTable, req: RouteRequest, random: () => number, weightDraw?: WeightDraw): RouteDecision {
  const group = (req.sourceNamespace === undefined ? undefined : table.consumers.get(req.sourceNamespace)) ?? table.producer;
  if (group === undefined) return table.unrouted;
  const view = requestView(req);
  for (const m of group.matches) if (m.test(view)) return act(m.rule, table, req, random, weightDraw);
  return reject(undefined, 404, `no ${group.kind} rule attached to ${table.service.key}:${table.port} matches`);
}

/**
 * The HTTP layer's one call per request to a Service VIP:port (proxy/http's RouteDecider):
 * the Service port's compiled table from the snapshot, then decideRoute.
 */
export function decideAtVip(state: MeshState, at: ServiceAtVip, req: RouteRequest, random: () => number = Math.random, weightDraw?: WeightDraw): RouteDecision {
  return decideRoute(state.routeTable(at.service, at.port.port), req, random, weightDraw);
}

/** A number in [0, 1) for one weighted choice of `rule`'s backends. */
export type WeightDraw = (rule: CompiledRule) => number;

/**
 * Weight draws that spread evenly per rule (core/even-draws.ts), each rule's sequence from a
 * `random()` start. State per compiled rule, dropped with it (a new config compiles new rules).
 */
export function spreadDraws(random: () => number = Math.random): WeightDraw {
  const sequences = new WeakMap<CompiledRule, EvenDraws>();
  return (rule) => {
    let s = sequences.get(rule);
    if (s === undefined) {
      s = new EvenDraws(random());
      sequences.set(rule, s);
    }
    return s.next();
  };
}
