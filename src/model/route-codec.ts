// The agent's check of a route resource (the model's RouteObject as the control plane
// pushed it): every field the matcher reads has the type it expects, each filter carries
// the body its type names, and regular expressions compile under RE2, so a malformed push
// is rejected alone instead of failing at the first request.

import { checkSchema, integer, requiredExcept, type Schema, type SchemaIssue } from './schema-check.ts';
import { regexProblem } from './route-schema.ts';
import { isRecord } from './fields.ts';

const str: Schema = { type: 'string' };
const anyStr: Schema = { type: 'custom', what: 'a string', check: (v) => (typeof v === 'string' ? undefined : `got ${JSON.stringify(v) ?? 'nothing'}`) };
const int = integer;
const port = int(1, 65535);
const obj = requiredExcept;
const list = (items: Schema): Schema => ({ type: 'array', items });
const matchType: Schema = { type: 'string', enum: ['Exact', 'RegularExpression'] };

/** {type, value} whose value must compile when type is RegularExpression. */
function matched(extra: Record<string, Schema>, types: readonly string[]): Schema {
  const shape = obj({ ...extra, type: { type: 'string', enum: [...types] }, value: anyStr });
  return {
    type: 'custom', what: 'a match',
    check: (v) => {
      const issues = checkSchema(shape, v, '');
      if (issues.length > 0) return issues.map((i) => `${i.field} ${i.message}`).join('; ');
      const m = v as { type: string; value: string };
      return m.type === 'RegularExpression' ? regexProblem(m.value) : undefined;
    },
  };
}

const HEADER_MATCH = matched({ name: str }, ['Exact', 'RegularExpression']);
const HEADER_MODIFIER = obj({ set: list(obj({ name: str, value: str })), add: list(obj({ name: str, value: str })), remove: list(str) });
const PATH_MODIFIER = obj({ type: { type: 'string', enum: ['ReplaceFullPath', 'ReplacePrefixMatch'] }, replaceFullPath: anyStr, replacePrefixMatch: anyStr }, ['replaceFullPath', 'replacePrefixMatch']);
const OBJECT_REF = { group: anyStr, kind: str, namespace: str, name: str, port };
const FILTER_BODY: Readonly<Record<string, [string, Schema]>> = {
  RequestHeaderModifier: ['requestHeaderModifier', HEADER_MODIFIER],
  ResponseHeaderModifier: ['responseHeaderModifier', HEADER_MODIFIER],
  RequestRedirect: ['requestRedirect', obj({
    scheme: { type: 'string', enum: ['http', 'https'] }, hostname: str, path: PATH_MODIFIER, port,
    statusCode: { type: 'custom', what: 'a redirect status', check: (v) => ([301, 302, 303, 307, 308].includes(v as number) ? undefined : `got ${JSON.stringify(v)}`) },
  }, ['scheme', 'hostname', 'path', 'port'])],
  URLRewrite: ['urlRewrite', obj({ hostname: str, path: PATH_MODIFIER }, ['hostname', 'path'])],
  RequestMirror: ['requestMirror', obj({ backendRef: obj(OBJECT_REF, ['port']), numerator: int(0, 2 ** 31 - 1), denominator: int(1, 2 ** 31 - 1) })],
  ExtensionRef: ['extensionRef', obj({ group: anyStr, kind: str, name: str })],
};

const FILTER: Schema = {
  type: 'custom', what: 'a filter with the body its type names',
  check: (v) => {
    if (!isRecord(v) || typeof v.type !== 'string') return 'has no type';
    const body = FILTER_BODY[v.type];
    if (body === undefined) return `unknown type ${JSON.stringify(v.type)}`;
    const [key, schema] = body;
    const issues = checkSchema(obj({ type: str, [key]: schema }), v, '');
    return issues.length === 0 ? undefined : issues.map((i) => `${i.field} ${i.message}`).join('; ');
  },
};
const BACKEND = obj({ ...OBJECT_REF, weight: int(0, 1_000_000), filters: list(FILTER) }, ['port']);
const COMMON = {
  kind: { type: 'string', enum: ['HTTPRoute', 'GRPCRoute'] } as Schema, name: str, namespace: str, creationTimestamp: str, generation: int(0, Number.MAX_SAFE_INTEGER),
  parentRefs: list(obj({ group: anyStr, kind: str, namespace: str, name: str, port, sectionName: str }, ['port', 'sectionName'])),
  hostnames: list(str),
};
const HTTP_ROUTE = obj({
  ...COMMON,
  rules: list(obj({
    name: str,
    matches: list(obj({
      path: matched({}, ['Exact', 'PathPrefix', 'RegularExpression']), headers: list(HEADER_MATCH), queryParams: list(HEADER_MATCH), method: str,
    }, ['method'])),
    filters: list(FILTER), backendRefs: list(BACKEND),
    timeouts: obj({ requestMs: int(1, Number.MAX_SAFE_INTEGER), backendRequestMs: int(1, Number.MAX_SAFE_INTEGER) }, ['requestMs', 'backendRequestMs']),
    retry: obj({ attempts: int(0, 10), codes: list(int(400, 599)), backoffMs: int(0, Number.MAX_SAFE_INTEGER) }),
  }, ['name', 'retry'])),
}, ['creationTimestamp', 'generation']);

const GRPC_METHOD: Schema = {
  type: 'custom', what: 'a gRPC method match',
  check: (v) => {
    const issues = checkSchema(obj({ type: matchType, service: str, method: str }, ['service', 'method']), v, '');
    if (issues.length > 0) return issues.map((i) => `${i.field} ${i.message}`).join('; ');
    const m = v as { type: string; service?: string; method?: string };
    if (m.type !== 'RegularExpression') return undefined;
    return [m.service, m.method].map((p) => (p === undefined ? undefined : regexProblem(p))).find((p) => p !== undefined);
  },
};
const GRPC_ROUTE = obj({
  ...COMMON,
  rules: list(obj({
    name: str, matches: list(obj({ method: GRPC_METHOD, headers: list(HEADER_MATCH) }, ['method'])), filters: list(FILTER), backendRefs: list(BACKEND),
    // From the route's retry.linkerd.io annotations.
    retry: obj({ attempts: int(0, 10), codes: list(int(400, 599)), backoffMs: int(0, Number.MAX_SAFE_INTEGER), grpcCodes: list(int(1, 16)) }),
  }, ['name', 'retry'])),
}, ['creationTimestamp', 'generation']);

/** Problems of a route resource body; empty when the matcher can use it. */
export function routeResourceIssues(body: unknown, field: string): SchemaIssue[] {
  const kind = isRecord(body) ? body.kind : undefined;
  if (kind !== 'HTTPRoute' && kind !== 'GRPCRoute') return [{ field: `${field}.kind`, message: `must be HTTPRoute or GRPCRoute, got ${JSON.stringify(kind) ?? 'nothing'}` }];
  return checkSchema(kind === 'HTTPRoute' ? HTTP_ROUTE : GRPC_ROUTE, body, field);
}
