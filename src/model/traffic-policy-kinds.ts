// The schemas of weft.dev/v1alpha1 DestinationPolicy, RateLimitPolicy and FaultInjection
// (every problem reported, each with its field; fields weft does not carry out refused with a
// reason) and their conversion into the model (traffic-policy-types.ts). Pure.

import { checkSchema, integer, type Schema, type SchemaIssue } from './schema-check.ts';
import { FieldError, labels, metadata, onlyKeys } from './fields.ts';
import { durationMs } from './route-kind.ts';
import { DURATION } from './route-schema.ts';
import { GRPC_STATUS } from './grpc-status.ts';
import { tryParseSpiffeId } from './spiffe.ts';
import { normalizePrincipal } from './policy-kind.ts';
import type {
  DestinationPolicyObject, FaultInjectionObject, RateLimit, RateLimitPolicyObject, TrafficPolicyKind, TrafficPolicyObject,
} from './traffic-policy-types.ts';

const MAX_INT = 2_147_483_647;
const duration: Schema = {
  type: 'string',
  check: (s) => (DURATION.test(s) && durationMs(s) > 0 ? undefined : `must be a duration above 0 such as 10s, 500ms or 1m30s, got ${JSON.stringify(s)}`),
};
const count = integer(1, MAX_INT);
const RETRY_TTL: Schema = {
  type: 'string',
  check: (s) => (DURATION.test(s) && durationMs(s) >= 10 && durationMs(s) <= 60_000 ? undefined : `must be a duration from 10ms to 1m such as 10s, got ${JSON.stringify(s)}`),
};
const SERVICE_REF: Schema = {
  type: 'object',
  properties: {
    group: { type: 'string', enum: [''] }, kind: { type: 'string', enum: ['Service'] }, name: { type: 'string' },
  },
  required: ['kind', 'name'],
  unsupported: { namespace: 'a policy targets a Service in its own namespace' },
};
const number = (min: number, max: number, what: string): Schema => ({
  type: 'custom', what, openApi: { type: 'number' },
  check: (v) => (typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? undefined : `got ${JSON.stringify(v) ?? 'nothing'}`),
});
/** Istio writes `percentage: {value: 50}`; a bare number means the same. */
const PERCENTAGE: Schema = {
  type: 'custom', what: 'a percentage 0-100 (a number, or {value: N} as Istio writes it)', openApi: { 'x-kubernetes-preserve-unknown-fields': true },
  check: (v) => (percentageOf(v) === undefined ? `got ${JSON.stringify(v) ?? 'nothing'}` : undefined),
};

function percentageOf(v: unknown): number | undefined {
  const n = typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).every((k) => k === 'value') ? (v as { value?: unknown }).value : v;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 && n <= 100 ? n : undefined;
}

export const DESTINATION_POLICY_SPEC: Schema = {
  type: 'object',
  properties: {
    targetRef: SERVICE_REF,
    trafficPolicy: {
      type: 'object',
      properties: {
        connectionPool: {
          type: 'object',
          properties: {
            tcp: { type: 'object', properties: { maxConnections: count }, unsupported: { connectTimeout: 'the agent\'s connect timeout applies (--connect-timeout)', tcpKeepalive: 'not supported', maxConnectionDuration: 'not supported', idleTimeout: 'not supported' } },
            http: {
              type: 'object',
              properties: { maxPendingRequests: count, http1MaxPendingRequests: count, maxRequestsPerConnection: integer(0, MAX_INT) },
              unsupported: {
                http2MaxRequests: 'not supported; use maxPendingRequests', maxRetries: 'retries are set on the HTTPRoute (retry) and bounded by the retry budget',
                idleTimeout: 'not supported', h2UpgradePolicy: 'not supported', useClientProtocol: 'not supported', maxConcurrentStreams: 'not supported',
              },
            },
          },
        },
        outlierDetection: {
          type: 'object',
          properties: { consecutive5xxErrors: integer(0, MAX_INT), interval: duration, baseEjectionTime: duration, maxEjectionPercent: integer(0, 100) },
          unsupported: {
            consecutiveGatewayErrors: 'not supported; consecutive5xxErrors counts 502-504 too', splitExternalLocalOriginErrors: 'not supported',
            consecutiveLocalOriginFailures: 'not supported', minHealthPercent: 'not supported', consecutiveErrors: 'deprecated in Istio; use consecutive5xxErrors',
          },
        },
        // Linkerd's ServiceProfile retryBudget: what retries may add to the requests sent to the Service.
        retryBudget: {
          type: 'object',
          properties: { retryRatio: number(0, 1000, 'a ratio 0-1000 (0.2: retries add at most 20%)'), minRetriesPerSecond: integer(0, 1_000_000), ttl: RETRY_TTL },
        },
      },
      unsupported: {
        loadBalancer: 'weft balances by peak EWMA (power of two choices)', tls: 'weft always speaks mTLS between agents',
        portLevelSettings: 'not supported; one policy applies to every port of the Service', tunnel: 'not supported', proxyProtocol: 'not supported',
      },
    },
  },
  required: ['targetRef', 'trafficPolicy'],
  unsupported: { host: 'use targetRef (a Service in the policy\'s namespace)', subsets: 'not supported', exportTo: 'not supported', workloadSelector: 'not supported' },
};

const RATE: Schema = { type: 'object', properties: { requestsPerSecond: number(0.001, 1e9, 'a rate above 0'), burst: count }, required: ['requestsPerSecond'] };
const CONNECTION_RATE: Schema = { type: 'object', properties: { perSecond: number(0.001, 1e9, 'a rate above 0'), burst: count }, required: ['perSecond'] };
export const RATE_LIMIT_POLICY_SPEC: Schema = {
  type: 'object',
  properties: {
    targetRef: SERVICE_REF,
    selector: { type: 'object', properties: { matchLabels: { type: 'map', values: { type: 'string' } } } },
    total: RATE,
    perSource: RATE,
    overrides: {
      type: 'array', minItems: 1,
      items: {
        type: 'object',
        properties: {
          principal: { type: 'string', check: (p) => (tryParseSpiffeId(normalizePrincipal(p)) === undefined ? `${JSON.stringify(p)} is not a SPIFFE id` : undefined) },
          requestsPerSecond: number(0.001, 1e9, 'a rate above 0'), burst: count,
        },
        required: ['principal', 'requestsPerSecond'],
      },
    },
    connections: CONNECTION_RATE,
    mode: { type: 'string', enum: ['Enforce', 'Shadow'] },
  },
};

export { GRPC_STATUS };

function grpcCode(v: unknown): number | undefined {
  if (typeof v === 'string') return GRPC_STATUS[v];
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 16 ? v : undefined;
}

export const FAULT_INJECTION_SPEC: Schema = {
  type: 'object',
  properties: {
    delay: { type: 'object', properties: { fixedDelay: duration, percentage: PERCENTAGE }, required: ['fixedDelay', 'percentage'], unsupported: { exponentialDelay: 'not supported; use fixedDelay' } },
    abort: {
      type: 'object',
      properties: {
        httpStatus: integer(200, 599),
        grpcStatus: { type: 'custom', what: 'a gRPC status other than OK (a name such as UNAVAILABLE, or 1-16)', check: (v) => (grpcCode(v) === undefined || grpcCode(v) === 0 ? `got ${JSON.stringify(v)}` : undefined) },
        percentage: PERCENTAGE,
      },
      required: ['percentage'],
      unsupported: { http2Error: 'not supported; use httpStatus or grpcStatus' },
    },
  },
};

const SPECS: Readonly<Record<TrafficPolicyKind, Schema>> = {
  DestinationPolicy: DESTINATION_POLICY_SPEC, RateLimitPolicy: RATE_LIMIT_POLICY_SPEC, FaultInjection: FAULT_INJECTION_SPEC,
};

export interface TrafficPolicyParse {
  readonly policy: TrafficPolicyObject | undefined;
  readonly issues: readonly SchemaIssue[];
}

type Raw = Record<string, unknown>;
const rec = (v: unknown): Raw => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Raw : {});
const defined = <T extends object>(o: T): T => Object.freeze(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))) as T;

/** Problems the schema cannot see: fields that go together or exclude each other. */
function crossFieldIssues(kind: TrafficPolicyKind, spec: Raw): SchemaIssue[] {
  const out: SchemaIssue[] = [];
  if (kind === 'DestinationPolicy') {
    const http = rec(rec(rec(spec.trafficPolicy).connectionPool).http);
    if (http.maxPendingRequests !== undefined && http.http1MaxPendingRequests !== undefined) {
      out.push({ field: 'spec.trafficPolicy.connectionPool.http', message: 'give maxPendingRequests or http1MaxPendingRequests (Istio\'s name for it), not both' });
    }
    const tp = rec(spec.trafficPolicy);
    if (tp.connectionPool === undefined && tp.outlierDetection === undefined && tp.retryBudget === undefined) {
      out.push({ field: 'spec.trafficPolicy', message: 'sets none of connectionPool, outlierDetection, retryBudget, so it does nothing' });
    }
  }
  if (kind === 'RateLimitPolicy') {
    if ((spec.targetRef === undefined) === (spec.selector === undefined)) out.push({ field: 'spec', message: 'needs exactly one of targetRef (a Service) and selector (workloads)' });
    if (spec.total === undefined && spec.perSource === undefined && spec.connections === undefined) out.push({ field: 'spec', message: 'sets none of total, perSource, connections, so it limits nothing' });
    if (spec.overrides !== undefined && spec.perSource === undefined) out.push({ field: 'spec.overrides', message: 'overrides change perSource limits; set perSource too' });
  }
  if (kind === 'FaultInjection') {
    if (spec.delay === undefined && spec.abort === undefined) out.push({ field: 'spec', message: 'sets neither delay nor abort, so it injects nothing' });
    const abort = rec(spec.abort);
    if (spec.abort !== undefined && abort.httpStatus === undefined && abort.grpcStatus === undefined) out.push({ field: 'spec.abort', message: 'needs httpStatus or grpcStatus' });
  }
  return out;
}

const rate = (v: unknown): RateLimit | undefined => {
  if (v === undefined) return undefined;
  const r = rec(v);
  const rps = Number(r.requestsPerSecond ?? r.perSecond);
  return Object.freeze({ requestsPerSecond: rps, burst: typeof r.burst === 'number' ? r.burst : Math.max(1, Math.ceil(rps)) });
};

function convert(kind: TrafficPolicyKind, name: string, namespace: string, spec: Raw): TrafficPolicyObject {
  const target = spec.targetRef === undefined ? undefined : Object.freeze({ name: String(rec(spec.targetRef).name) });
  switch (kind) {
    case 'DestinationPolicy': {
      const tp = rec(spec.trafficPolicy);
      const pool = rec(tp.connectionPool);
      const http = rec(pool.http);
      const od = tp.outlierDetection === undefined ? undefined : rec(tp.outlierDetection);
      const rb = tp.retryBudget === undefined ? undefined : rec(tp.retryBudget);
      const p: DestinationPolicyObject = {
        kind, name, namespace, targetRef: target ?? { name: '' },
        connectionPool: defined({
          maxConnections: rec(pool.tcp).maxConnections as number | undefined,
          maxPendingRequests: (http.maxPendingRequests ?? http.http1MaxPendingRequests) as number | undefined,
          maxRequestsPerConnection: http.maxRequestsPerConnection as number | undefined,
        }),
        ...(od === undefined ? {} : {
          outlierDetection: Object.freeze({
            consecutive5xxErrors: typeof od.consecutive5xxErrors === 'number' ? od.consecutive5xxErrors : 5,
            intervalMs: typeof od.interval === 'string' ? durationMs(od.interval) : 10_000,
            baseEjectionMs: typeof od.baseEjectionTime === 'string' ? durationMs(od.baseEjectionTime) : 30_000,
            maxEjectionPercent: typeof od.maxEjectionPercent === 'number' ? od.maxEjectionPercent : 10,
          }),
        }),
        ...(rb === undefined ? {} : {
          retryBudget: Object.freeze({
            retryRatio: typeof rb.retryRatio === 'number' ? rb.retryRatio : 0.2,
            minRetriesPerSecond: typeof rb.minRetriesPerSecond === 'number' ? rb.minRetriesPerSecond : 10,
            ttlMs: typeof rb.ttl === 'string' ? durationMs(rb.ttl) : 10_000,
          }),
        }),
      };
      return Object.freeze(p);
    }
    case 'RateLimitPolicy': {
      const p: RateLimitPolicyObject = defined({
        kind, name, namespace, targetRef: target,
        selector: spec.selector === undefined ? undefined : labels(rec(spec.selector).matchLabels, 'spec.selector.matchLabels'),
        total: rate(spec.total), perSource: rate(spec.perSource), connections: rate(spec.connections),
        overrides: Object.freeze(((spec.overrides ?? []) as Raw[]).map((o) => Object.freeze({ principal: normalizePrincipal(String(o.principal)), ...(rate(o) as RateLimit) }))),
        mode: spec.mode === 'Shadow' ? 'Shadow' as const : 'Enforce' as const,
      });
      return p;
    }
    case 'FaultInjection': {
      const d = spec.delay === undefined ? undefined : rec(spec.delay);
      const a = spec.abort === undefined ? undefined : rec(spec.abort);
      const grpcStatus = a === undefined ? undefined : grpcCode(a.grpcStatus);
      const p: FaultInjectionObject = defined({
        kind, name, namespace,
        delay: d === undefined ? undefined : Object.freeze({ fixedDelayMs: durationMs(String(d.fixedDelay)), percentage: percentageOf(d.percentage) ?? 0 }),
        abort: a === undefined ? undefined : defined({
          // gRPC-only aborts still answer plain HTTP callers: 503, as Istio maps UNAVAILABLE-like codes.
          httpStatus: typeof a.httpStatus === 'number' ? a.httpStatus : 503,
          grpcStatus,
          percentage: percentageOf(a.percentage) ?? 0,
        }),
      });
      return p;
    }
  }
}

/** Checks the whole object and converts it when it has no problem. */
export function parseTrafficPolicy(kind: TrafficPolicyKind, body: Record<string, unknown>): TrafficPolicyParse {
  const issues: SchemaIssue[] = [];
  let md: ReturnType<typeof metadata> | undefined;
  try {
    onlyKeys(body, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], '');
    md = metadata(body, true);
  } catch (err: unknown) {
    if (!(err instanceof FieldError)) throw err;
    issues.push({ field: err.field, message: err.message });
  }
  const spec = body.spec === undefined ? {} : body.spec;
  issues.push(...checkSchema(SPECS[kind], spec, 'spec'));
  if (issues.length === 0) issues.push(...crossFieldIssues(kind, rec(spec)));
  if (issues.length > 0 || md === undefined) return { policy: undefined, issues };
  try {
    return { policy: convert(kind, md.name, md.namespace, rec(spec)), issues };
  } catch (err: unknown) {
    if (!(err instanceof FieldError)) throw err;
    return { policy: undefined, issues: [{ field: err.field, message: err.message }] };
  }
}
