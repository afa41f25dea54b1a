// Authorization, with Istio's semantics: DENY policies first; then, if any ALLOW policy
// applies to the destination workload, the request must match one of them; otherwise it
// is allowed. Dry-run policies never change the decision; they yield a shadow decision.
// A connection is checked on its L4 facts; an HTTP request also on its method, path, host
// and headers (model/l7-authorization.ts). Rules with HTTP attributes checked without the
// request fail closed: they never allow, and deny on their L4 part alone; unless the
// connection is admitted for per-request checks, when they may allow (a request may match)
// and do not deny (a request will be denied if it matches).
// Pure: everything comes from the request and the precompiled policies.

import type { AuthorizationPolicyObject, PolicyCondition, PolicyOperation, PolicySource, Workload } from './types.ts';
import { ROOT_NAMESPACE } from './types.ts';
import { selects } from './labels.ts';
import { ipv4ToInt, parseCidr, type Cidr } from './cidr.ts';
import { isIPv4 } from 'node:net';
import { all, conditionMatch, operationMatch, ruleHasL7, some, type HttpAttributes, type Match } from './l7-authorization.ts';

interface CompiledSource extends Omit<PolicySource, 'ipBlocks' | 'notIpBlocks'> {
  readonly ipBlocks?: readonly Cidr[];
  readonly notIpBlocks?: readonly Cidr[];
}

interface CompiledRule {
  readonly from: readonly CompiledSource[];
  readonly to: readonly PolicyOperation[];
  readonly when: readonly PolicyCondition[];
}

export interface CompiledPolicy {
  /** `namespace/name` */
  readonly key: string;
  readonly policy: AuthorizationPolicyObject;
  readonly rules: readonly CompiledRule[];
}

/** The policies that apply to one workload, split as authorize needs them. */
export interface ApplicablePolicies {
  readonly deny: readonly CompiledPolicy[];
  readonly allow: readonly CompiledPolicy[];
  readonly dryRunDeny: readonly CompiledPolicy[];
  readonly dryRunAllow: readonly CompiledPolicy[];
}

/** What authorize needs from the state. */
export interface PolicyView {
  policiesFor(workload: Workload): ApplicablePolicies;
}

export interface AuthorizationRequest {
  /** SPIFFE id of the peer; undefined for plaintext (no mTLS) sources. */
  readonly sourcePrincipal: string | undefined;
  /** Namespace of the peer's identity; undefined for plaintext sources. */
  readonly sourceNamespace: string | undefined;
  readonly sourceIp: string;
  readonly destinationWorkload: Workload;
  readonly destinationPort: number;
  /**
   * The HTTP request, when the destination agent parsed one; undefined for a connection.
   * `per-request`: a connection whose every request will be checked with its HTTP attributes
   * (the destination agent parses it): HTTP rules then neither refuse it nor let it through
   * here; each request is decided on its own.
   */
  readonly http?: HttpAttributes | 'per-request' | undefined;
}

export interface AuthorizationDecision {
  readonly allowed: boolean;
  /** `namespace/name` of the policy that decided, when one did. */
  readonly policy?: string;
  readonly reason: string;
  /** Present when dry-run policies apply: what the decision would be were they enforced. */
  readonly dryRun?: Omit<AuthorizationDecision, 'dryRun'>;
}

export const NO_POLICIES: ApplicablePolicies = Object.freeze({ deny: [], allow: [], dryRunDeny: [], dryRunAllow: [] });

export function compilePolicy(policy: AuthorizationPolicyObject): CompiledPolicy {
  const cidrs = (l: readonly string[] | undefined): readonly Cidr[] | undefined => (l === undefined ? undefined : l.map(parseCidr));
  return Object.freeze({
    key: `${policy.namespace}/${policy.name}`,
    policy,
    rules: policy.rules.map((r) => ({
      from: r.from.map((s) => ({ ...s, ipBlocks: cidrs(s.ipBlocks), notIpBlocks: cidrs(s.notIpBlocks) })),
      to: r.to,
      when: r.when ?? [],
    })),
  });
}

/** A policy applies to the workloads its selector picks in its namespace, or mesh-wide from the root namespace. */
export function policyApplies(policy: AuthorizationPolicyObject, workload: Workload): boolean {
  if (policy.namespace !== workload.namespace && policy.namespace !== ROOT_NAMESPACE) return false;
  return Object.keys(policy.selector).length === 0 || selects(policy.selector, workload.labels);
}

/** `*` matches anything present; one leading or trailing `*` matches a suffix or prefix. */
export function matchesPattern(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return value === pattern;
}

const any = (patterns: readonly string[], value: string | undefined): boolean => patterns.some((p) => matchesPattern(p, value));

/** The request with its source IP as an integer (undefined when not IPv4), computed once per check. */
interface Prepared extends AuthorizationRequest {
  readonly ip: number | undefined;
}

const inBlock = (ip: number | undefined) => (c: Cidr): boolean => ip !== undefined && ((ip & c.mask) >>> 0) === c.base;

function sourceMatches(s: CompiledSource, r: Prepared): boolean {
  if (s.principals !== undefined && !any(s.principals, r.sourcePrincipal)) return false;
  if (s.notPrincipals !== undefined && any(s.notPrincipals, r.sourcePrincipal)) return false;
  if (s.namespaces !== undefined && !any(s.namespaces, r.sourceNamespace)) return false;
  if (s.notNamespaces !== undefined && any(s.notNamespaces, r.sourceNamespace)) return false;
  if (s.ipBlocks !== undefined && !s.ipBlocks.some(inBlock(r.ip))) return false;
  if (s.notIpBlocks?.some(inBlock(r.ip)) === true) return false;
  return true;
}

/** Whether the policy matches; undefined when that needs the HTTP request and there is none. */
export function policyMatches(p: CompiledPolicy, request: AuthorizationRequest): Match {
  return matches(p, prepare(request));
}

function prepare(r: AuthorizationRequest): Prepared {
  return { ...r, ip: isIPv4(r.sourceIp) ? ipv4ToInt(r.sourceIp) : undefined };
}

function matches(p: CompiledPolicy, r: Prepared): Match {
  const http = r.http === 'per-request' ? undefined : r.http;
  return some(p.rules.map((rule) => all([
    rule.from.length === 0 || rule.from.some((s) => sourceMatches(s, r)),
    rule.to.length === 0 ? true : some(rule.to.map((o) => operationMatch(o, r.destinationPort, http))),
    all(rule.when.map((c) => conditionMatch(c, r, http))),
  ])));
}

function decide(deny: readonly CompiledPolicy[], allow: readonly CompiledPolicy[], r: Prepared): Omit<AuthorizationDecision, 'dryRun'> {
  // Unknown (HTTP attributes, no request) counts as a match for DENY and as none for ALLOW,
  // the other way round when each request will be checked.
  const later = r.http === 'per-request';
  const denied = deny.find((p) => (later ? matches(p, r) === true : matches(p, r) !== false));
  if (denied !== undefined) return { allowed: false, policy: denied.key, reason: `denied by DENY policy ${denied.key}` };
  if (allow.length === 0) return { allowed: true, reason: 'no ALLOW policy applies to the workload' };
  const allowed = allow.find((p) => (later ? matches(p, r) !== false : matches(p, r) === true));
  if (allowed !== undefined) return { allowed: true, policy: allowed.key, reason: `allowed by ALLOW policy ${allowed.key}` };
  return { allowed: false, reason: `no rule of the ${allow.length} ALLOW policy(ies) applying to the workload matched` };
}

const NOTHING_APPLIES: AuthorizationDecision = Object.freeze({ allowed: true, reason: 'no ALLOW policy applies to the workload' });

export function authorize(state: PolicyView, request: AuthorizationRequest): AuthorizationDecision {
  const p = state.policiesFor(request.destinationWorkload);
  if (p === NO_POLICIES) return NOTHING_APPLIES;
  const r = prepare(request);
  const decision = decide(p.deny, p.allow, r);
  if (p.dryRunDeny.length === 0 && p.dryRunAllow.length === 0) return decision;
  const dryRun = decide([...p.deny, ...p.dryRunDeny], [...p.allow, ...p.dryRunAllow], r);
  // An ALLOW that matched nothing names no policy; a dry-run one would be the cause, name it.
  const blamed = dryRun.allowed || dryRun.policy !== undefined || p.dryRunAllow[0] === undefined ? dryRun : { ...dryRun, policy: p.dryRunAllow[0].key };
  return { ...decision, dryRun: blamed };
}

/** Whether any policy that applies has rules only an HTTP request can decide: the agent must then check each request. */
export function needsRequestCheck(p: ApplicablePolicies): boolean {
  if (p === NO_POLICIES) return false;
  return [...p.deny, ...p.allow, ...p.dryRunDeny, ...p.dryRunAllow].some((c) => c.policy.rules.some(ruleHasL7));
}
