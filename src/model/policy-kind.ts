// weft.dev/v1alpha1 AuthorizationPolicy: its schema (every problem reported) and conversion
// into the model. Semantics follow Istio's AuthorizationPolicy: L4 sources and ports, and the
// HTTP attributes (`to[].operation` methods, paths, hosts; `when` on request headers) that the
// destination agent checks per request (model/l7-authorization.ts). Fields weft cannot check
// (JWT claims, remote IPs) are refused with a reason rather than ignored, because ignoring
// them would change what a rule means.

import type { AuthorizationPolicyObject, PolicyCondition, PolicyOperation, PolicyRule, PolicySource } from './types.ts';
import { DRY_RUN_ANNOTATION } from './types.ts';
import { checkSchema, type Schema, type SchemaIssue } from './schema-check.ts';
import { DNS_LABEL, FieldError, labels, metadata, onlyKeys, record } from './fields.ts';
import { tryParseSpiffeId } from './spiffe.ts';
import { parseCidr } from './cidr.ts';
import { isWeftError } from '../core/errors.ts';

const JWT = 'needs request authentication (JWT), which weft does not do';

/** `td/ns/N/sa/S` (Istio's form) and `spiffe://td/...` mean the same; wildcards stay as written. */
export function normalizePrincipal(p: string): string {
  return p.startsWith('*') || p.startsWith('spiffe://') ? p : `spiffe://${p}`;
}

function wildcardProblem(s: string): string | undefined {
  const stars = s.split('*').length - 1;
  if (stars > 1 || (stars === 1 && !s.startsWith('*') && !s.endsWith('*'))) return 'a `*` may appear once, at the start or the end';
  return undefined;
}

function principalProblem(p: string): string | undefined {
  if (p.includes('*')) return wildcardProblem(p);
  return tryParseSpiffeId(normalizePrincipal(p)) === undefined
    ? `${JSON.stringify(p)} is not a SPIFFE id spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> (the spiffe:// prefix may be left out)`
    : undefined;
}

function namespaceProblem(n: string): string | undefined {
  if (n.includes('*')) return wildcardProblem(n);
  return DNS_LABEL.test(n) && n.length <= 63 ? undefined : `${JSON.stringify(n)} is not a namespace name (DNS label)`;
}

function cidrProblem(c: string): string | undefined {
  try {
    parseCidr(c);
    return undefined;
  } catch (err: unknown) {
    if (isWeftError(err)) return err.message;
    throw err;
  }
}

function toPort(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^[0-9]{1,5}$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined;
}

const PORT: Schema = {
  type: 'custom', what: 'a port 1-65535 (number or string)',
  check: (v) => (toPort(v) === undefined ? `got ${JSON.stringify(v) ?? 'nothing'}` : undefined),
};
const strings = (check: (s: string) => string | undefined): Schema => ({ type: 'array', items: { type: 'string', check }, minItems: 1 });

const SOURCE: Schema = {
  type: 'object',
  properties: {
    principals: strings(principalProblem), notPrincipals: strings(principalProblem),
    namespaces: strings(namespaceProblem), notNamespaces: strings(namespaceProblem),
    ipBlocks: strings(cidrProblem), notIpBlocks: strings(cidrProblem),
  },
  unsupported: {
    requestPrincipals: JWT, notRequestPrincipals: JWT,
    remoteIpBlocks: 'needs the X-Forwarded-For chain, which weft does not trust (use ipBlocks)', notRemoteIpBlocks: 'needs the X-Forwarded-For chain, which weft does not trust (use notIpBlocks)',
  },
};
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function methodProblem(m: string): string | undefined {
  return TOKEN.test(m) && !m.includes('*') ? undefined : `${JSON.stringify(m)} is not an HTTP method`;
}

function pathProblem(p: string): string | undefined {
  if (p.includes('*')) return wildcardProblem(p);
  return p.startsWith('/') ? undefined : `${JSON.stringify(p)} is not a path (starts with /, or uses one leading or trailing *)`;
}

function hostProblem(h: string): string | undefined {
  if (h.includes('*')) return wildcardProblem(h);
  return /^[A-Za-z0-9.-]+(:[0-9]{1,5})?$/.test(h) ? undefined : `${JSON.stringify(h)} is not a host name`;
}

const OPERATION: Schema = {
  type: 'object',
  properties: {
    ports: { type: 'array', items: PORT, minItems: 1 }, notPorts: { type: 'array', items: PORT, minItems: 1 },
    methods: strings(methodProblem), notMethods: strings(methodProblem),
    paths: strings(pathProblem), notPaths: strings(pathProblem),
    hosts: strings(hostProblem), notHosts: strings(hostProblem),
  },
};

/** `when` keys weft checks, and the values each takes. */
const HEADER_KEY = /^request\.headers\[([!#$%&'*+.^_`|~0-9A-Za-z-]+)\]$/;
const CONDITION_VALUE: Readonly<Record<string, (v: string) => string | undefined>> = {
  'source.ip': cidrProblem,
  'source.namespace': namespaceProblem,
  'source.principal': principalProblem,
  'destination.port': (v) => (toPort(v) === undefined ? `${JSON.stringify(v)} is not a port` : undefined),
};
const REFUSED_KEYS: readonly [RegExp, string][] = [
  [/^request\.auth\./, JWT],
  [/^remote\.ip$/, 'needs the X-Forwarded-For chain, which weft does not trust; use source.ip'],
  [/^(destination\.ip|connection\.sni|experimental\..*)$/, 'is not supported by weft'],
];

function conditionProblems(c: unknown, at: string): SchemaIssue[] {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) return [];
  const { key, values, notValues } = c as { key?: unknown; values?: unknown; notValues?: unknown };
  if (typeof key !== 'string') return [];
  const issues: SchemaIssue[] = [];
  if (values === undefined && notValues === undefined) issues.push({ field: at, message: 'needs values or notValues' });
  const header = HEADER_KEY.exec(key);
  const check = header === null ? CONDITION_VALUE[key] : (): undefined => undefined;
  if (check === undefined) {
    const refused = REFUSED_KEYS.find(([re]) => re.test(key));
    issues.push({ field: `${at}.key`, message: `${JSON.stringify(key)} ${refused?.[1] ?? `is not a known key (known: request.headers[<name>], ${Object.keys(CONDITION_VALUE).join(', ')})`}` });
    return issues;
  }
  for (const list of ['values', 'notValues'] as const) {
    const vs = list === 'values' ? values : notValues;
    if (!Array.isArray(vs)) continue;
    vs.forEach((v: unknown, i) => {
      const bad = typeof v === 'string' ? check(v) : undefined;
      if (bad !== undefined) issues.push({ field: `${at}.${list}[${i}]`, message: bad });
    });
  }
  return issues;
}

const CONDITION: Schema = {
  type: 'object',
  properties: { key: { type: 'string' }, values: { type: 'array', items: { type: 'string' }, minItems: 1 }, notValues: { type: 'array', items: { type: 'string' }, minItems: 1 } },
  required: ['key'],
};
const RULE: Schema = {
  type: 'object',
  properties: {
    from: { type: 'array', items: { type: 'object', properties: { source: SOURCE }, required: ['source'] } },
    to: { type: 'array', items: { type: 'object', properties: { operation: OPERATION }, required: ['operation'] } },
    when: { type: 'array', items: CONDITION },
  },
};
export const AUTHORIZATION_POLICY_SPEC: Schema = {
  type: 'object',
  properties: {
    selector: { type: 'object', properties: { matchLabels: { type: 'map', values: { type: 'string' } } } },
    action: { type: 'string', enum: ['ALLOW', 'DENY'] },
    rules: { type: 'array', items: RULE },
  },
  unsupported: {
    provider: 'CUSTOM actions are not supported', targetRef: 'use selector.matchLabels', targetRefs: 'use selector.matchLabels',
  },
};

interface RawSource { [k: string]: string[] | undefined }
type RawOperation = { ports?: unknown[]; notPorts?: unknown[] } & { [K in 'methods' | 'notMethods' | 'paths' | 'notPaths' | 'hosts' | 'notHosts']?: string[] };
interface RawCondition { key: string; values?: string[]; notValues?: string[] }
interface RawRule { from?: { source: RawSource }[]; to?: { operation: RawOperation }[]; when?: RawCondition[] }
interface RawSpec { selector?: { matchLabels?: Record<string, string> }; action?: 'ALLOW' | 'DENY'; rules?: RawRule[] }

function source(s: RawSource): PolicySource {
  const out: Record<string, readonly string[]> = {};
  for (const [k, v] of Object.entries(s)) {
    if (v === undefined) continue;
    if (k === 'principals' || k === 'notPrincipals') out[k] = Object.freeze(v.map(normalizePrincipal));
    else if (k === 'ipBlocks' || k === 'notIpBlocks') out[k] = Object.freeze(v.map((c) => parseCidr(c).text));
    else out[k] = Object.freeze([...v]);
  }
  return Object.freeze(out);
}

function operation(o: RawOperation): PolicyOperation {
  const out: Record<string, readonly (number | string)[]> = {};
  if (o.ports !== undefined) out.ports = Object.freeze(o.ports.map((p) => toPort(p) ?? 0));
  if (o.notPorts !== undefined) out.notPorts = Object.freeze(o.notPorts.map((p) => toPort(p) ?? 0));
  for (const k of ['methods', 'notMethods', 'paths', 'notPaths'] as const) if (o[k] !== undefined) out[k] = Object.freeze([...o[k]]);
  // Hosts match case-insensitively and without a port: store them that way once.
  for (const k of ['hosts', 'notHosts'] as const) if (o[k] !== undefined) out[k] = Object.freeze(o[k].map((h) => h.toLowerCase().replace(/:[0-9]+$/, '')));
  return Object.freeze(out);
}

function condition(c: RawCondition): PolicyCondition {
  const header = HEADER_KEY.exec(c.key);
  const key = header === null ? c.key : `request.headers[${(header[1]).toLowerCase()}]`;
  const norm = (v: string): string => (key === 'source.principal' ? normalizePrincipal(v) : key === 'source.ip' ? parseCidr(v).text : v);
  return Object.freeze({
    key,
    ...(c.values === undefined ? {} : { values: Object.freeze(c.values.map(norm)) }),
    ...(c.notValues === undefined ? {} : { notValues: Object.freeze(c.notValues.map(norm)) }),
  });
}

export interface PolicyParse {
  readonly policy: AuthorizationPolicyObject | undefined;
  readonly issues: readonly SchemaIssue[];
}

/** Checks the whole object and converts it when it has no problem. */
export function parseAuthorizationPolicy(body: Record<string, unknown>): PolicyParse {
  const issues: SchemaIssue[] = [];
  let md: ReturnType<typeof metadata> | undefined;
  try {
    onlyKeys(body, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], '');
    md = metadata(body, true);
    const dry = md.annotations[DRY_RUN_ANNOTATION];
    if (dry !== undefined && dry !== 'true' && dry !== 'false') {
      issues.push({ field: `metadata.annotations.${DRY_RUN_ANNOTATION}`, message: `must be "true" or "false", got ${JSON.stringify(dry)}` });
    }
  } catch (err: unknown) {
    if (!(err instanceof FieldError)) throw err;
    issues.push({ field: err.field, message: err.message });
  }
  const spec = body.spec === undefined ? {} : body.spec;
  issues.push(...checkSchema(AUTHORIZATION_POLICY_SPEC, spec, 'spec'));
  const rawRules = (spec as { rules?: unknown }).rules;
  if (Array.isArray(rawRules)) {
    rawRules.forEach((r: unknown, i) => {
      const when = typeof r === 'object' && r !== null ? (r as { when?: unknown }).when : undefined;
      if (Array.isArray(when)) when.forEach((c: unknown, j) => issues.push(...conditionProblems(c, `spec.rules[${i}].when[${j}]`)));
    });
  }
  if (issues.length > 0 || md === undefined) return { policy: undefined, issues };
  const raw = spec as RawSpec;
  let selector;
  try {
    selector = labels(record(raw.selector, 'spec.selector', true).matchLabels, 'spec.selector.matchLabels');
  } catch (err: unknown) {
    if (!(err instanceof FieldError)) throw err;
    return { policy: undefined, issues: [{ field: err.field, message: err.message }] };
  }
  const rules: PolicyRule[] = (raw.rules ?? []).map((r) => Object.freeze({
    from: Object.freeze((r.from ?? []).map((f) => source(f.source))),
    to: Object.freeze((r.to ?? []).map((t) => operation(t.operation))),
    ...(r.when === undefined || r.when.length === 0 ? {} : { when: Object.freeze(r.when.map(condition)) }),
  }));
  return {
    issues,
    policy: Object.freeze({
      name: md.name, namespace: md.namespace, selector, action: raw.action ?? 'ALLOW',
      rules: Object.freeze(rules), dryRun: md.annotations[DRY_RUN_ANNOTATION] === 'true',
    }),
  };
}
