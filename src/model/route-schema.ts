// The shape of HTTPRoute and GRPCRoute specs (gateway.networking.k8s.io/v1): field names,
// types, enums, lengths and patterns from the Gateway API CRDs, every problem reported with
// its path. Rules that span fields (the CRDs' CEL validations) live in route-kind.ts.

import { RE2JS } from 're2js';
import { integer, type Schema } from './schema-check.ts';

const int = integer;

function text(what: string, pattern: RegExp | undefined, min: number, max: number): Schema {
  return {
    type: 'string',
    check: (s) => {
      if (s.length < min || s.length > max) return `must be ${what} of ${min}-${max} characters, got ${s.length}`;
      if (pattern !== undefined && !pattern.test(s)) return `must be ${what}, got ${JSON.stringify(s)}`;
      return undefined;
    },
  };
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const HOSTNAME = text('a hostname (optionally *.-prefixed)', /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 1, 253);
export const PRECISE_HOSTNAME = text('a hostname', DNS_SUBDOMAIN, 1, 253);
const GROUP = text('an API group (empty for the core group)', /^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 0, 253);
const KIND = text('a kind', /^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/, 1, 63);
const OBJECT_NAME = text('an object name', undefined, 1, 253);
const NAMESPACE = text('a namespace (DNS label)', /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 1, 63);
const SECTION_NAME = text('a section name', DNS_SUBDOMAIN, 1, 253);
export const HEADER_NAME = text('a header name (token characters)', /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/, 1, 256);
const HEADER_VALUE = text('a header value (printable US-ASCII)', /^[!-~]+([\t ]?[!-~]+)*$/, 1, 4096);
/** GEP-2257: one to four components of 1-5 digits and a unit h, m, s or ms. */
export const DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const DURATION_SCHEMA = text('a Gateway API duration such as 10s, 500ms or 1m30s', DURATION, 1, 40);
const PORT = int(1, 65535);

/** Why a regular expression is refused: weft matches with RE2 (linear time, as Envoy does), whose syntax this is. */
export function regexProblem(pattern: string): string | undefined {
  try {
    RE2JS.compile(pattern);
    return undefined;
  } catch (err: unknown) {
    return `is not an RE2 regular expression: ${err instanceof Error ? err.message : String(err)}`;
  }
}

const obj = (properties: Record<string, Schema>, required: readonly string[] = [], unsupported: Record<string, string> = {}): Schema => ({
  type: 'object', properties, required, unsupported,
});
const arr = (items: Schema, maxItems: number): Schema => ({ type: 'array', items, maxItems });

const PARENT_REF = obj({ group: GROUP, kind: KIND, namespace: NAMESPACE, name: OBJECT_NAME, sectionName: SECTION_NAME, port: PORT }, ['name']);
const BACKEND_OBJECT_REF = { group: GROUP, kind: KIND, namespace: NAMESPACE, name: OBJECT_NAME, port: PORT };
const STRING_MATCH_TYPE: Schema = { type: 'string', enum: ['Exact', 'RegularExpression'] };
const HEADER_MATCH = obj({ type: STRING_MATCH_TYPE, name: HEADER_NAME, value: text('a header value', undefined, 1, 4096) }, ['name', 'value']);
const QUERY_MATCH = obj({ type: STRING_MATCH_TYPE, name: HEADER_NAME, value: text('a query parameter value', undefined, 1, 1024) }, ['name', 'value']);
const HEADER = obj({ name: HEADER_NAME, value: HEADER_VALUE }, ['name', 'value']);
const HEADER_MODIFIER = obj({
  set: arr(HEADER, 16), add: arr(HEADER, 16), remove: arr(HEADER_NAME, 16),
});
const PATH_MODIFIER = obj({
  type: { type: 'string', enum: ['ReplaceFullPath', 'ReplacePrefixMatch'] },
  replaceFullPath: text('a path', undefined, 0, 1024), replacePrefixMatch: text('a path', undefined, 0, 1024),
}, ['type']);
const MIRROR = obj({
  backendRef: obj(BACKEND_OBJECT_REF, ['name']),
  percent: int(0, 100),
  fraction: obj({ numerator: int(0, 2 ** 31 - 1), denominator: int(1, 2 ** 31 - 1) }, ['numerator']),
}, ['backendRef']);
const EXTENSION_REF = obj({ group: GROUP, kind: KIND, name: OBJECT_NAME }, ['group', 'kind', 'name']);
const LATER = 'is not supported by weft yet';

function filterSchema(types: readonly string[], http: boolean): Schema {
  const properties: Record<string, Schema> = {
    type: { type: 'string', enum: [...types] },
    requestHeaderModifier: HEADER_MODIFIER, responseHeaderModifier: HEADER_MODIFIER, requestMirror: MIRROR, extensionRef: EXTENSION_REF,
  };
  if (http) {
    properties.requestRedirect = obj({
      scheme: { type: 'string', enum: ['http', 'https'] }, hostname: PRECISE_HOSTNAME, path: PATH_MODIFIER, port: PORT,
      statusCode: { type: 'custom', what: 'one of 301, 302, 303, 307, 308', check: (v) => ([301, 302, 303, 307, 308].includes(v as number) ? undefined : `got ${JSON.stringify(v)}`) },
    });
    properties.urlRewrite = obj({ hostname: PRECISE_HOSTNAME, path: PATH_MODIFIER });
  }
  return obj(properties, ['type'], { cors: `the CORS filter ${LATER}`, externalAuth: `the ExternalAuth filter ${LATER}` });
}

export const HTTP_FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite', 'ExtensionRef'] as const;
export const GRPC_FILTER_TYPES = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'ExtensionRef'] as const;

function routeSpec(rule: Schema): Schema {
  return obj({
    parentRefs: arr(PARENT_REF, 32),
    hostnames: arr(HOSTNAME, 16),
    rules: arr(rule, 16),
  }, [], { useDefaultGateways: 'default Gateways do not apply to a mesh' });
}

function backendRef(filter: Schema): Schema {
  return obj({ ...BACKEND_OBJECT_REF, weight: int(0, 1_000_000), filters: arr(filter, 16) }, ['name']);
}

const HTTP_FILTER = filterSchema(HTTP_FILTER_TYPES, true);
const GRPC_FILTER = filterSchema(GRPC_FILTER_TYPES, false);

export const HTTP_ROUTE_SPEC: Schema = routeSpec(obj({
  name: SECTION_NAME,
  matches: arr(obj({
      path: obj({ type: { type: 'string', enum: ['Exact', 'PathPrefix', 'RegularExpression'] }, value: text('a path', undefined, 1, 1024) }),
      headers: arr(HEADER_MATCH, 16),
      queryParams: arr(QUERY_MATCH, 16),
      method: { type: 'string', enum: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] },
    }), 64),
  filters: arr(HTTP_FILTER, 16),
  backendRefs: arr(backendRef(HTTP_FILTER), 16),
  timeouts: obj({ request: DURATION_SCHEMA, backendRequest: DURATION_SCHEMA }),
  retry: obj({ codes: arr(int(400, 599), 200), attempts: int(0, 10), backoff: DURATION_SCHEMA }),
}, [], {
  sessionPersistence: `sessionPersistence ${LATER}`,
}));

export const GRPC_ROUTE_SPEC: Schema = routeSpec(obj({
  name: SECTION_NAME,
  matches: arr(obj({
      method: obj({
        type: STRING_MATCH_TYPE, service: text('a gRPC service name', undefined, 1, 1024), method: text('a gRPC method name', undefined, 1, 1024),
      }),
      headers: arr(HEADER_MATCH, 16),
    }), 64),
  filters: arr(GRPC_FILTER, 16),
  backendRefs: arr(backendRef(GRPC_FILTER), 16),
}, [], { sessionPersistence: `sessionPersistence ${LATER}` }));

/** The CRDs' bound on matches across all rules of one route. */
export const MAX_MATCHES_PER_ROUTE = 128;
