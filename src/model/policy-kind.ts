// weft.dev/v1alpha1 AuthorizationPolicy: its schema (every problem reported) and conversion
// into the model. Semantics follow Istio's L4 AuthorizationPolicy; L7 fields are refused
// with a reason rather than ignored, because ignoring them would change what a rule means.

import type { AuthorizationPolicyObject, PolicyOperation, PolicyRule, PolicySource } from './types.ts';
import { DRY_RUN_ANNOTATION } from './types.ts';
import { checkSchema, type Schema, type SchemaIssue } from './schema-check.ts';
import { DNS_LABEL, FieldError, labels, metadata, onlyKeys, record } from './fields.ts';
import { tryParseSpiffeId } from './spiffe.ts';
import { parseCidr } from './cidr.ts';
import { isWeftError } from '../core/errors.ts';

const L7 = 'is an L7 attribute; weft enforces L4 only (principals, namespaces, IP blocks, ports)';

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
    requestPrincipals: L7, notRequestPrincipals: L7,
    remoteIpBlocks: 'needs the HTTP X-Forwarded-For header; weft enforces L4 only (use ipBlocks)', notRemoteIpBlocks: L7,
  },
};
const OPERATION: Schema = {
  type: 'object',
  properties: { ports: { type: 'array', items: PORT, minItems: 1 }, notPorts: { type: 'array', items: PORT, minItems: 1 } },
  unsupported: { hosts: L7, notHosts: L7, methods: L7, notMethods: L7, paths: L7, notPaths: L7 },
};
const RULE: Schema = {
  type: 'object',
  properties: {
    from: { type: 'array', items: { type: 'object', properties: { source: SOURCE }, required: ['source'] } },
    to: { type: 'array', items: { type: 'object', properties: { operation: OPERATION }, required: ['operation'] } },
  },
  unsupported: { when: 'conditions are not supported; weft enforces L4 only' },
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
interface RawOperation { ports?: unknown[]; notPorts?: unknown[] }
interface RawRule { from?: { source: RawSource }[]; to?: { operation: RawOperation }[] }
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
  const out: { ports?: readonly number[]; notPorts?: readonly number[] } = {};
  if (o.ports !== undefined) out.ports = Object.freeze(o.ports.map((p) => toPort(p) ?? 0));
  if (o.notPorts !== undefined) out.notPorts = Object.freeze(o.notPorts.map((p) => toPort(p) ?? 0));
  return Object.freeze(out);
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
  }));
  return {
    issues,
    policy: Object.freeze({
      name: md.name, namespace: md.namespace, selector, action: raw.action ?? 'ALLOW',
      rules: Object.freeze(rules), dryRun: md.annotations[DRY_RUN_ANNOTATION] === 'true',
    }),
  };
}
