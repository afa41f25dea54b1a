// HTTPRoute and GRPCRoute objects (gateway.networking.k8s.io/v1): the shape check of
// route-schema.ts, then the rules the CRDs state in CEL (a path match's syntax, a redirect
// never beside backendRefs, ReplacePrefixMatch only after one PathPrefix match, one action
// per header name, distinct parentRefs, ...), then conversion into the model's form with
// defaults filled in. Every problem is reported with its field; a route with any problem
// is refused whole.

import type {
  BackendObjectRef, GrpcMethodMatch, GrpcRouteMatch, GrpcRouteObject, GrpcRouteRule, HeaderMatch, HeaderModifier, HttpRouteMatch,
  HttpRouteObject, HttpRouteRule, PathModifier, QueryParamMatch, RedirectStatus, RouteBackendRef, RouteFilter, RouteKind, RouteObject,
  RouteParentRef, RouteRetry, RouteTimeouts,
} from './route-types.ts';
import {
  DEFAULT_GRPC_RETRY_LIMIT, DEFAULT_ROUTE_RETRY, GATEWAY_GROUP, GRPC_RETRY_ANNOTATION, RETRY_LIMIT_ANNOTATION,
} from './route-types.ts';
import { GRPC_STATUS } from './grpc-status.ts';
import { checkSchema, type SchemaIssue } from './schema-check.ts';
import { FieldError, isRecord, metadata, onlyKeys } from './fields.ts';
import { GRPC_ROUTE_SPEC, HTTP_ROUTE_SPEC, MAX_MATCHES_PER_ROUTE, regexProblem } from './route-schema.ts';

export interface RouteParse {
  readonly route: RouteObject | undefined;
  readonly issues: readonly SchemaIssue[];
}

type Raw = Record<string, unknown>;
type Issue = (field: string, message: string) => void;

const rec = (v: unknown): Raw => (isRecord(v) ? v : {});
const arr = (v: unknown): Raw[] => (Array.isArray(v) ? v.map(rec) : []);
const opt = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

// ---- durations (GEP-2257) ------------------------------------------------------------------

const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** Milliseconds of a GEP-2257 duration already checked against its pattern. */
export function durationMs(d: string): number {
  let total = 0;
  for (const m of d.matchAll(/([0-9]{1,5})(ms|h|m|s)/g)) total += Number(m[1]) * (UNIT_MS[m[2] ?? 's'] ?? 0);
  return total;
}

// ---- path syntax (the CEL rules on HTTPPathMatch) -----------------------------------------------

const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$/;

/** Why a value cannot be an Exact or PathPrefix path. */
export function pathProblem(v: string): string | undefined {
  if (!v.startsWith('/')) return 'must be an absolute path starting with /';
  for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#']) if (v.includes(bad)) return `must not contain ${JSON.stringify(bad)}`;
  if (v.endsWith('/..') || v.endsWith('/.')) return 'must not end with /. or /..';
  if (!PATH_CHARS.test(v)) return 'must only contain path characters (letters, digits, -._~!$&\'()*+,;=:@/ and %XX escapes)';
  return undefined;
}

// ---- the cross-field rules --------------------------------------------------------------------

function checkStringMatch(m: Raw, field: string, issue: Issue): void {
  if (m.type === 'RegularExpression' && typeof m.value === 'string') {
    const bad = regexProblem(m.value);
    if (bad !== undefined) issue(`${field}.value`, bad);
  }
}

function checkHeaderModifier(m: Raw, field: string, issue: Issue): void {
  const seen = new Map<string, string>();
  const note = (name: unknown, at: string): void => {
    if (typeof name !== 'string') return;
    const lower = name.toLowerCase();
    const first = seen.get(lower);
    if (first !== undefined) issue(at, `names header ${JSON.stringify(name)} again (first at ${first}); one action per header name`);
    else seen.set(lower, at);
  };
  for (const action of ['set', 'add'] as const) arr(m[action]).forEach((h, i) => note(h.name, `${field}.${action}[${i}].name`));
  (Array.isArray(m.remove) ? m.remove : []).forEach((n: unknown, i) => note(n, `${field}.remove[${i}]`));
}

function checkPathModifier(p: Raw, field: string, issue: Issue): void {
  const want = p.type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
  const other = want === 'replaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
  if (typeof p[want] !== 'string') issue(`${field}.${want}`, `is required when type is ${String(p.type)}`);
  if (p[other] !== undefined) issue(`${field}.${other}`, `must not be set when type is ${String(p.type)}`);
  const v = p[want];
  if (typeof v === 'string' && v !== '' && pathProblem(v) !== undefined) issue(`${field}.${want}`, pathProblem(v) ?? '');
}

const FILTER_FIELD: Readonly<Record<string, string>> = {
  RequestHeaderModifier: 'requestHeaderModifier', ResponseHeaderModifier: 'responseHeaderModifier', RequestMirror: 'requestMirror',
  RequestRedirect: 'requestRedirect', URLRewrite: 'urlRewrite', ExtensionRef: 'extensionRef',
};
const ONCE = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite'];

/** Filters of a rule or a backendRef; returns whether any uses ReplacePrefixMatch. */
function checkFilters(filters: Raw[], field: string, issue: Issue): boolean {
  let prefixModifier = false;
  const count = new Map<string, number>();
  filters.forEach((f, i) => {
    const at = `${field}[${i}]`;
    const type = String(f.type);
    count.set(type, (count.get(type) ?? 0) + 1);
    if (ONCE.includes(type) && count.get(type) === 2) issue(at, `repeats the ${type} filter, which may appear once`);
    for (const [t, key] of Object.entries(FILTER_FIELD)) {
      if (t === type && f[key] === undefined) issue(`${at}.${key}`, `is required for a ${type} filter`);
      if (t !== type && f[key] !== undefined) issue(`${at}.${key}`, `must not be set on a ${type} filter`);
    }
    const body = rec(f[FILTER_FIELD[type] ?? '']);
    if (type === 'RequestHeaderModifier' || type === 'ResponseHeaderModifier') checkHeaderModifier(body, `${at}.${FILTER_FIELD[type]}`, issue);
    if ((type === 'RequestRedirect' || type === 'URLRewrite') && isRecord(body.path)) {
      checkPathModifier(body.path, `${at}.${FILTER_FIELD[type]}.path`, issue);
      if (body.path.type === 'ReplacePrefixMatch') prefixModifier = true;
    }
    if (type === 'RequestMirror') {
      if (body.percent !== undefined && body.fraction !== undefined) issue(`${at}.requestMirror`, 'may set percent or fraction, not both');
      const fr = rec(body.fraction);
      if (typeof fr.numerator === 'number' && fr.numerator > (num(fr.denominator) ?? 100)) issue(`${at}.requestMirror.fraction`, 'numerator must not exceed denominator');
      checkBackendPort(rec(body.backendRef), `${at}.requestMirror.backendRef`, issue);
    }
  });
  if ((count.get('RequestRedirect') ?? 0) > 0 && (count.get('URLRewrite') ?? 0) > 0) {
    issue(field, 'may hold a RequestRedirect or a URLRewrite filter, not both');
  }
  return prefixModifier;
}

function checkBackendPort(b: Raw, field: string, issue: Issue): void {
  if ((b.group ?? '') === '' && (b.kind ?? 'Service') === 'Service' && b.port === undefined) issue(`${field}.port`, 'is required for a Service (the Service port, not the target port)');
}

function parentKey(p: Raw, namespace: string): string {
  return [p.group ?? GATEWAY_GROUP, p.kind ?? 'Gateway', p.namespace ?? namespace, p.name].join('/');
}

/** ParentRefs to one object must all set sectionName/port, or none, and differ in them. */
function checkParentRefs(parents: Raw[], namespace: string, issue: Issue): void {
  const groups = Map.groupBy(parents.map((p, i) => ({ p, i })), ({ p }) => parentKey(p, namespace));
  for (const same of groups.values()) {
    if (same.length < 2) continue;
    const shape = (p: Raw): string => `${p.sectionName === undefined ? '-' : 's'}${p.port === undefined ? '-' : 'p'}`;
    const seen = new Set<string>();
    for (const { p, i } of same) {
      const at = `spec.parentRefs[${i}]`;
      if (shape(p) !== shape(same[0]?.p ?? {})) issue(at, 'references the same parent as another entry; all such entries must set the same of sectionName and port');
      const id = `${String(p.sectionName)}/${String(p.port)}`;
      if (seen.has(id)) issue(at, 'duplicates another reference to the same parent (sectionName and port must differ)');
      seen.add(id);
    }
  }
}

function checkHttpRules(rules: Raw[], issue: Issue): void {
  rules.forEach((rule, r) => {
    const at = `spec.rules[${r}]`;
    const matches = arr(rule.matches);
    matches.forEach((m, i) => {
      const path = rec(m.path);
      const type = path.type ?? 'PathPrefix';
      const value = typeof path.value === 'string' ? path.value : '/';
      if (type === 'RegularExpression') checkStringMatch({ type, value }, `${at}.matches[${i}].path`, issue);
      else if (pathProblem(value) !== undefined) issue(`${at}.matches[${i}].path.value`, pathProblem(value) ?? '');
      arr(m.headers).forEach((h, j) => checkStringMatch(h, `${at}.matches[${i}].headers[${j}]`, issue));
      arr(m.queryParams).forEach((q, j) => checkStringMatch(q, `${at}.matches[${i}].queryParams[${j}]`, issue));
    });
    const filters = arr(rule.filters);
    const backends = arr(rule.backendRefs);
    const prefix = checkFilters(filters, `${at}.filters`, issue);
    let backendPrefix = false;
    backends.forEach((b, i) => {
      checkBackendPort(b, `${at}.backendRefs[${i}]`, issue);
      if (checkFilters(arr(b.filters), `${at}.backendRefs[${i}].filters`, issue)) backendPrefix = true;
    });
    if (backends.length > 0 && filters.some((f) => f.type === 'RequestRedirect')) {
      issue(`${at}.filters`, 'a RequestRedirect filter must not be used together with backendRefs');
    }
    if (prefix || backendPrefix) {
      const only = matches.length === 1 ? rec(matches[0]?.path) : undefined;
      if (only === undefined || (only.type ?? 'PathPrefix') !== 'PathPrefix') {
        issue(`${at}.matches`, 'ReplacePrefixMatch needs exactly one match, of type PathPrefix (the prefix it replaces)');
      }
    }
    const t = rec(rule.timeouts);
    if (typeof t.request === 'string' && typeof t.backendRequest === 'string') {
      const req = durationMs(t.request);
      if (req !== 0 && durationMs(t.backendRequest) > req) issue(`${at}.timeouts.backendRequest`, `must not be longer than timeouts.request (${t.request})`);
    }
  });
}

const GRPC_SERVICE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;

function checkGrpcRules(rules: Raw[], issue: Issue): void {
  rules.forEach((rule, r) => {
    const at = `spec.rules[${r}]`;
    arr(rule.matches).forEach((m, i) => {
      if (m.method === undefined) return;
      const mm = rec(m.method);
      const f = `${at}.matches[${i}].method`;
      if (mm.service === undefined && mm.method === undefined) issue(f, 'must set service, method or both');
      const regex = mm.type === 'RegularExpression';
      for (const [key, pattern] of [['service', GRPC_SERVICE], ['method', GRPC_METHOD]] as const) {
        const v = mm[key];
        if (typeof v !== 'string') continue;
        const bad = regex ? regexProblem(v) : pattern.test(v) ? undefined : `must match ${pattern.source}`;
        if (bad !== undefined) issue(`${f}.${key}`, bad);
      }
      arr(m.headers).forEach((h, j) => checkStringMatch(h, `${at}.matches[${i}].headers[${j}]`, issue));
    });
    checkFilters(arr(rule.filters), `${at}.filters`, issue);
    arr(rule.backendRefs).forEach((b, i) => {
      checkBackendPort(b, `${at}.backendRefs[${i}]`, issue);
      checkFilters(arr(b.filters), `${at}.backendRefs[${i}].filters`, issue);
    });
  });
}

function checkRules(kind: RouteKind, rules: Raw[], issue: Issue): void {
  const total = rules.reduce((n, r) => n + arr(r.matches).length, 0);
  if (total > MAX_MATCHES_PER_ROUTE) issue('spec.rules', `hold ${total} matches; at most ${MAX_MATCHES_PER_ROUTE} across all rules`);
  const names = new Map<string, number>();
  rules.forEach((r, i) => {
    if (typeof r.name !== 'string') return;
    const first = names.get(r.name);
    if (first !== undefined) issue(`spec.rules[${i}].name`, `duplicates the name of spec.rules[${first}]`);
    else names.set(r.name, i);
  });
  if (kind === 'HTTPRoute') checkHttpRules(rules, issue);
  else checkGrpcRules(rules, issue);
}

// ---- conversion ---------------------------------------------------------------------------

function firstByName<T extends { readonly name: string }>(list: T[], key: (t: T) => string): T[] {
  const seen = new Set<string>();
  return list.filter((x) => !seen.has(key(x)) && seen.add(key(x)) !== undefined);
}

function headerMatches(v: unknown): HeaderMatch[] {
  const all = arr(v).map((h): HeaderMatch => Object.freeze({
    name: String(h.name).toLowerCase(), type: h.type === 'RegularExpression' ? 'RegularExpression' : 'Exact', value: String(h.value),
  }));
  return firstByName(all, (h) => h.name);
}

function queryMatches(v: unknown): QueryParamMatch[] {
  const all = arr(v).map((q): QueryParamMatch => Object.freeze({
    name: String(q.name), type: q.type === 'RegularExpression' ? 'RegularExpression' : 'Exact', value: String(q.value),
  }));
  return firstByName(all, (q) => q.name);
}

function headerModifier(v: unknown): HeaderModifier {
  const m = rec(v);
  const pairs = (x: unknown) => Object.freeze(arr(x).map((h) => Object.freeze({ name: String(h.name).toLowerCase(), value: String(h.value) })));
  return Object.freeze({
    set: pairs(m.set), add: pairs(m.add),
    remove: Object.freeze((Array.isArray(m.remove) ? m.remove : []).map((n: unknown) => String(n).toLowerCase())),
  });
}

function pathModifier(v: unknown): PathModifier | undefined {
  if (!isRecord(v)) return undefined;
  return v.type === 'ReplaceFullPath'
    ? Object.freeze({ type: 'ReplaceFullPath', replaceFullPath: String(v.replaceFullPath) })
    : Object.freeze({ type: 'ReplacePrefixMatch', replacePrefixMatch: String(v.replacePrefixMatch) });
}

function objectRef(b: Raw, namespace: string): BackendObjectRef {
  return Object.freeze({
    group: opt(b.group) ?? '', kind: opt(b.kind) ?? 'Service', namespace: opt(b.namespace) ?? namespace, name: String(b.name), port: num(b.port),
  });
}

function filters(v: unknown, namespace: string): RouteFilter[] {
  return arr(v).map((f): RouteFilter => {
    switch (f.type) {
      case 'RequestHeaderModifier': return Object.freeze({ type: 'RequestHeaderModifier', requestHeaderModifier: headerModifier(f.requestHeaderModifier) });
      case 'ResponseHeaderModifier': return Object.freeze({ type: 'ResponseHeaderModifier', responseHeaderModifier: headerModifier(f.responseHeaderModifier) });
      case 'RequestRedirect': {
        const r = rec(f.requestRedirect);
        return Object.freeze({
          type: 'RequestRedirect',
          requestRedirect: Object.freeze({
            scheme: r.scheme === 'http' || r.scheme === 'https' ? r.scheme : undefined, hostname: opt(r.hostname), path: pathModifier(r.path),
            port: num(r.port), statusCode: (num(r.statusCode) ?? 302) as RedirectStatus,
          }),
        });
      }
      case 'URLRewrite': {
        const r = rec(f.urlRewrite);
        return Object.freeze({ type: 'URLRewrite', urlRewrite: Object.freeze({ hostname: opt(r.hostname), path: pathModifier(r.path) }) });
      }
      case 'RequestMirror': {
        const m = rec(f.requestMirror);
        const fr = rec(m.fraction);
        const share = m.percent !== undefined ? { numerator: Number(m.percent), denominator: 100 }
          : m.fraction !== undefined ? { numerator: Number(fr.numerator), denominator: num(fr.denominator) ?? 100 } : { numerator: 1, denominator: 1 };
        return Object.freeze({ type: 'RequestMirror', requestMirror: Object.freeze({ backendRef: objectRef(rec(m.backendRef), namespace), ...share }) });
      }
      default: {
        const e = rec(f.extensionRef);
        return Object.freeze({ type: 'ExtensionRef', extensionRef: Object.freeze({ group: String(e.group), kind: String(e.kind), name: String(e.name) }) });
      }
    }
  });
}

function backendRefs(v: unknown, namespace: string): RouteBackendRef[] {
  return arr(v).map((b) => Object.freeze({ ...objectRef(b, namespace), weight: num(b.weight) ?? 1, filters: Object.freeze(filters(b.filters, namespace)) }));
}

function retry(v: unknown): RouteRetry | undefined {
  if (v === undefined) return undefined;
  const r = rec(v);
  const codes = Array.isArray(r.codes) ? (r.codes as number[]) : DEFAULT_ROUTE_RETRY.codes;
  return Object.freeze({
    attempts: num(r.attempts) ?? DEFAULT_ROUTE_RETRY.attempts,
    codes: Object.freeze([...new Set(codes)].sort((a, b) => a - b)),
    backoffMs: typeof r.backoff === 'string' ? durationMs(r.backoff) : DEFAULT_ROUTE_RETRY.backoffMs,
  });
}

function timeouts(v: unknown): RouteTimeouts {
  const t = rec(v);
  const ms = (d: unknown): number | undefined => (typeof d === 'string' && durationMs(d) > 0 ? durationMs(d) : undefined);
  return Object.freeze({ requestMs: ms(t.request), backendRequestMs: ms(t.backendRequest) });
}

const DEFAULT_MATCH: HttpRouteMatch = Object.freeze({ path: Object.freeze({ type: 'PathPrefix', value: '/' }), headers: [], queryParams: [], method: undefined });

// The CRD's default for spec.rules: one rule matching every request (with no backend, so 500).
const DEFAULT_RULES: readonly Raw[] = Object.freeze([{}]);

function httpRules(v: unknown, namespace: string): HttpRouteRule[] {
  const rules = arr(v);
  return (rules.length === 0 ? DEFAULT_RULES : rules).map((r) => {
    const matches = arr(r.matches).map((m): HttpRouteMatch => {
      const p = rec(m.path);
      return Object.freeze({
        path: Object.freeze({ type: (opt(p.type) ?? 'PathPrefix') as HttpRouteMatch['path']['type'], value: opt(p.value) ?? '/' }),
        headers: Object.freeze(headerMatches(m.headers)), queryParams: Object.freeze(queryMatches(m.queryParams)), method: opt(m.method),
      });
    });
    return Object.freeze({
      name: opt(r.name), matches: Object.freeze(matches.length === 0 ? [DEFAULT_MATCH] : matches),
      filters: Object.freeze(filters(r.filters, namespace)), backendRefs: Object.freeze(backendRefs(r.backendRefs, namespace)), timeouts: timeouts(r.timeouts),
      ...(r.retry === undefined ? {} : { retry: retry(r.retry) }),
    });
  });
}

/**
 * A GRPCRoute's retry from Linkerd's annotations: `retry.linkerd.io/grpc` lists gRPC status
 * names (kebab or upper case: `unavailable`, `DEADLINE_EXCEEDED`), `retry.linkerd.io/limit`
 * the retries per call (default 1). Problems are reported to `issue`.
 */
function grpcRetry(annotations: Readonly<Record<string, string>>, issue: Issue): RouteRetry | undefined {
  const list = annotations[GRPC_RETRY_ANNOTATION];
  const limit = annotations[RETRY_LIMIT_ANNOTATION];
  if (list === undefined) {
    if (limit !== undefined) issue(`metadata.annotations.${RETRY_LIMIT_ANNOTATION}`, `has no effect without ${GRPC_RETRY_ANNOTATION}`);
    return undefined;
  }
  const codes: number[] = [];
  for (const name of list.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    const code = GRPC_STATUS[name.toUpperCase().replaceAll('-', '_')];
    if (code === undefined || code === 0) issue(`metadata.annotations.${GRPC_RETRY_ANNOTATION}`, `${JSON.stringify(name)} is not a gRPC status to retry (e.g. unavailable, deadline-exceeded)`);
    else codes.push(code);
  }
  if (codes.length === 0) issue(`metadata.annotations.${GRPC_RETRY_ANNOTATION}`, 'names no gRPC status');
  let attempts = DEFAULT_GRPC_RETRY_LIMIT;
  if (limit !== undefined) {
    attempts = /^[0-9]{1,2}$/.test(limit) ? Number(limit) : NaN;
    if (!(attempts >= 0 && attempts <= 10)) issue(`metadata.annotations.${RETRY_LIMIT_ANNOTATION}`, `must be a whole number 0-10, got ${JSON.stringify(limit)}`);
  }
  return Object.freeze({
    attempts, codes: Object.freeze([]), backoffMs: DEFAULT_ROUTE_RETRY.backoffMs, grpcCodes: Object.freeze([...new Set(codes)].sort((a, b) => a - b)),
  });
}

function grpcRules(v: unknown, namespace: string, retry: RouteRetry | undefined): GrpcRouteRule[] {
  return arr(v).map((r) => {
    const matches = arr(r.matches).map((m): GrpcRouteMatch => {
      const mm = isRecord(m.method) ? m.method : undefined;
      const regex = mm?.type === 'RegularExpression';
      // A leading '.' (protobuf's fully qualified form) never appears in a request's :path.
      const service = opt(mm?.service);
      const method: GrpcMethodMatch | undefined = mm === undefined ? undefined : Object.freeze({
        type: regex ? 'RegularExpression' : 'Exact', service: !regex && service?.startsWith('.') ? service.slice(1) : service, method: opt(mm.method),
      });
      return Object.freeze({ method, headers: Object.freeze(headerMatches(m.headers)) });
    });
    return Object.freeze({
      name: opt(r.name), matches: Object.freeze(matches), filters: Object.freeze(filters(r.filters, namespace)),
      backendRefs: Object.freeze(backendRefs(r.backendRefs, namespace)), ...(retry === undefined ? {} : { retry }),
    });
  });
}

function parentRefs(v: unknown, namespace: string): RouteParentRef[] {
  return arr(v).map((p) => Object.freeze({
    group: opt(p.group) ?? GATEWAY_GROUP, kind: opt(p.kind) ?? 'Gateway', namespace: opt(p.namespace) ?? namespace, name: String(p.name),
    port: num(p.port), sectionName: opt(p.sectionName),
  }));
}

/** Checks the whole object and converts it when it has no problem. */
export function parseRoute(kind: RouteKind, body: Record<string, unknown>): RouteParse {
  const issues: SchemaIssue[] = [];
  const issue: Issue = (field, message) => void issues.push({ field, message });
  let md: ReturnType<typeof metadata> | undefined;
  try {
    onlyKeys(body, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], '');
    md = metadata(body, true);
  } catch (err: unknown) {
    if (!(err instanceof FieldError)) throw err;
    issue(err.field, err.message);
  }
  const meta = rec(body.metadata);
  const created = meta.creationTimestamp;
  if (created !== undefined && (typeof created !== 'string' || Number.isNaN(Date.parse(created)))) {
    issue('metadata.creationTimestamp', `must be an RFC 3339 time, got ${JSON.stringify(created)}`);
  }
  const spec = body.spec ?? {};
  issues.push(...checkSchema(kind === 'HTTPRoute' ? HTTP_ROUTE_SPEC : GRPC_ROUTE_SPEC, spec, 'spec'));
  if (issues.length > 0 || md === undefined) return { route: undefined, issues };
  const s = rec(spec);
  checkParentRefs(arr(s.parentRefs), md.namespace, issue);
  checkRules(kind, arr(s.rules), issue);
  const retry = kind === 'GRPCRoute' ? grpcRetry(md.annotations, issue) : undefined;
  if (issues.length > 0) return { route: undefined, issues };
  const common = {
    name: md.name, namespace: md.namespace, creationTimestamp: opt(created), generation: num(meta.generation),
    parentRefs: Object.freeze(parentRefs(s.parentRefs, md.namespace)),
    hostnames: Object.freeze((Array.isArray(s.hostnames) ? s.hostnames : []).map(String)),
  };
  const route: HttpRouteObject | GrpcRouteObject = kind === 'HTTPRoute'
    ? Object.freeze({ kind, ...common, rules: Object.freeze(httpRules(s.rules, md.namespace)) })
    : Object.freeze({ kind, ...common, rules: Object.freeze(grpcRules(s.rules, md.namespace, retry)) });
  return { route, issues: [] };
}
