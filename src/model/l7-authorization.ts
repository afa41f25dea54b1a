// The HTTP half of AuthorizationPolicy, with Istio's semantics: `to[].operation` methods,
// paths and hosts, and `when` conditions (request headers, plus the L4 keys). Matching is
// three-valued: a rule with HTTP attributes cannot be decided without the request, and then
// fails closed the way Istio's ztunnel does (in an ALLOW policy it does not match; in a DENY
// policy its L4 part decides alone, so it may deny more, never less). Pure.

import type { PolicyCondition, PolicyOperation, PolicyRule } from './types.ts';
import { ipv4ToInt, parseCidr } from './cidr.ts';

/** What the destination agent knows of one HTTP request (gRPC: POST /package.Service/Method). */
export interface HttpAttributes {
  readonly method: string;
  /** The request target as sent (query included; matching normalises it). */
  readonly path: string;
  /** Host header or :authority, as sent. */
  readonly host: string | undefined;
  /** Lowercase names, as node:http gives them. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
}

/** The L4 facts a `when` condition may read. */
export interface ConditionFacts {
  readonly sourcePrincipal: string | undefined;
  readonly sourceNamespace: string | undefined;
  readonly sourceIp: string;
  readonly destinationPort: number;
}

/** true, false, or undefined when the answer needs the HTTP request and there is none. */
export type Match = boolean | undefined;

const L7_OPERATION_FIELDS = ['methods', 'notMethods', 'paths', 'notPaths', 'hosts', 'notHosts'] as const;

export function operationHasL7(o: PolicyOperation): boolean {
  return L7_OPERATION_FIELDS.some((k) => o[k] !== undefined);
}

export function conditionHasL7(c: PolicyCondition): boolean {
  return c.key.startsWith('request.');
}

/** Whether a rule names any attribute only an HTTP request has. */
export function ruleHasL7(r: PolicyRule): boolean {
  return r.to.some(operationHasL7) || (r.when ?? []).some(conditionHasL7);
}

const UNRESERVED = /%(4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|2E|5F|7E)/gi;

/**
 * The path policy sees (Istio's BASE normalisation): query and fragment dropped,
 * percent-encoded unreserved characters decoded, `.` and `..` segments resolved (RFC 3986
 * 5.2.4), so `/public/../admin` is `/admin`. The HTTP layer must send on this same path, or
 * the backend could read a path the policy never saw.
 */
export function normalizePath(target: string): string {
  let p = target;
  const cut = p.search(/[?#]/);
  if (cut >= 0) p = p.slice(0, cut);
  p = p.replace(UNRESERVED, (m) => String.fromCharCode(parseInt(m.slice(1), 16)));
  if (!p.startsWith('/')) p = `/${p}`;
  const out: string[] = [];
  const segments = p.split('/').slice(1);
  segments.forEach((seg, i) => {
    const last = i === segments.length - 1;
    if (seg === '.') {
      if (last) out.push('');
    } else if (seg === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(seg);
    }
  });
  return `/${out.join('/')}`;
}

/** Host without its port, lowercased. */
export function normalizeHost(host: string | undefined): string | undefined {
  if (host === undefined) return undefined;
  const h = host.toLowerCase();
  return h.startsWith('[') ? h : h.replace(/:[0-9]*$/, '');
}

/** `*` matches any present value; one leading or trailing `*` a suffix or prefix; else exact. */
function pattern(p: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (p === '*') return true;
  if (p.endsWith('*')) return value.startsWith(p.slice(0, -1));
  if (p.startsWith('*')) return value.endsWith(p.slice(1));
  return value === p;
}

const anyOf = (ps: readonly string[], v: string | undefined): boolean => ps.some((p) => pattern(p, v));

/** Does the operation hold for this port (and request, when there is one)? */
export function operationMatch(o: PolicyOperation, port: number, http: HttpAttributes | undefined): Match {
  if (o.ports !== undefined && !o.ports.includes(port)) return false;
  if (o.notPorts?.includes(port) === true) return false;
  if (!operationHasL7(o)) return true;
  if (http === undefined) return undefined;
  const path = normalizePath(http.path);
  const host = normalizeHost(http.host);
  if (o.methods !== undefined && !o.methods.includes(http.method)) return false;
  if (o.notMethods?.includes(http.method) === true) return false;
  if (o.paths !== undefined && !anyOf(o.paths, path)) return false;
  if (o.notPaths !== undefined && anyOf(o.notPaths, path)) return false;
  if (o.hosts !== undefined && !anyOf(o.hosts, host)) return false;
  if (o.notHosts !== undefined && anyOf(o.notHosts, host)) return false;
  return true;
}

function headerValue(http: HttpAttributes, name: string): string | undefined {
  const v = http.headers[name];
  return v === undefined ? undefined : typeof v === 'string' ? v : v.join(',');
}

function factValue(key: string, facts: ConditionFacts): string | undefined {
  switch (key) {
    case 'source.principal': return facts.sourcePrincipal;
    case 'source.namespace': return facts.sourceNamespace;
    case 'destination.port': return String(facts.destinationPort);
    default: return undefined;
  }
}

function ipIn(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  try {
    return ((ipv4ToInt(ip) & c.mask) >>> 0) === c.base;
  } catch {
    return false;
  }
}

export function conditionMatch(c: PolicyCondition, facts: ConditionFacts, http: HttpAttributes | undefined): Match {
  let holds: (p: string) => boolean;
  if (c.key === 'source.ip') {
    holds = (p) => ipIn(p, facts.sourceIp);
  } else if (conditionHasL7(c)) {
    if (http === undefined) return undefined;
    const name = /^request\.headers\[(.+)\]$/.exec(c.key)?.[1];
    const v = name === undefined ? undefined : headerValue(http, name);
    holds = (p) => pattern(p, v);
  } else {
    const v = factValue(c.key, facts);
    holds = (p) => pattern(p, v);
  }
  if (c.values !== undefined && !c.values.some(holds)) return false;
  if (c.notValues?.some(holds) === true) return false;
  return true;
}

/** Three-valued AND: false wins, then unknown. */
export function all(ms: Iterable<Match>): Match {
  let out: Match = true;
  for (const m of ms) {
    if (m === false) return false;
    if (m === undefined) out = undefined;
  }
  return out;
}

/** Three-valued OR: true wins, then unknown. */
export function some(ms: Iterable<Match>): Match {
  let out: Match = false;
  for (const m of ms) {
    if (m === true) return true;
    if (m === undefined) out = undefined;
  }
  return out;
}
