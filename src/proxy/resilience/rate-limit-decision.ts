// Which token buckets one request draws on, and what the answer is: for each RateLimitPolicy
// that applies to the destination workload, its per-source bucket (keyed by the caller's
// SPIFFE id, every plaintext caller sharing one; an override's own rate for its principal)
// and its total bucket. Any empty bucket refuses the request (Shadow policies only count).
// Pure over the buckets it is given.

import type { RateLimit, RateLimitPolicyObject } from '../../model/traffic-policy-types.ts';
import { shapeForRate, type BucketShape, type TakeResult } from './token-bucket.ts';

/** What the decision draws on: take(key, shape) from the agent's shared table. */
export interface Buckets {
  take(key: string, shape: BucketShape): TakeResult;
}

export interface RateLimitVerdict {
  readonly allowed: boolean;
  /** The policy (`namespace/name`) whose bucket refused, enforcing or shadow. */
  readonly policy?: string;
  /** Set when only a Shadow policy would have refused. */
  readonly shadow?: boolean;
  /** Milliseconds until the refusing bucket has a token (for retry-after). */
  readonly retryAfterMs?: number;
}

const ALLOWED: RateLimitVerdict = Object.freeze({ allowed: true });
/** Where every plaintext caller's per-source bucket is kept. */
export const PLAINTEXT_SOURCE = 'plaintext';

const shapeOf = (r: RateLimit): BucketShape => shapeForRate(r.requestsPerSecond, r.burst);

/** The request limits of the policies, for a caller (`sourcePrincipal` undefined: plaintext). */
export function rateLimitVerdict(policies: readonly RateLimitPolicyObject[], sourcePrincipal: string | undefined, buckets: Buckets): RateLimitVerdict {
  let shadow: RateLimitVerdict | undefined;
  for (const p of policies) {
    const key = `${p.namespace}/${p.name}`;
    const draws: [string, RateLimit][] = [];
    if (p.perSource !== undefined) {
      const source = sourcePrincipal ?? PLAINTEXT_SOURCE;
      const override = sourcePrincipal === undefined ? undefined : p.overrides.find((o) => o.principal === sourcePrincipal);
      draws.push([`rl|${key}|src|${source}`, override ?? p.perSource]);
    }
    if (p.total !== undefined) draws.push([`rl|${key}|total`, p.total]);
    for (const [bucket, rate] of draws) {
      const r = buckets.take(bucket, shapeOf(rate));
      if (r.allowed) continue;
      if (p.mode === 'Shadow') {
        shadow ??= { allowed: true, policy: key, shadow: true, retryAfterMs: r.retryAfterMs };
        break;
      }
      return { allowed: false, policy: key, retryAfterMs: r.retryAfterMs };
    }
  }
  return shadow ?? ALLOWED;
}

/** The L4 variant: new connections per second (one bucket per policy). A Shadow refusal does not stop an enforcing policy after it. */
export function connectionRateVerdict(policies: readonly RateLimitPolicyObject[], buckets: Buckets): RateLimitVerdict {
  let shadow: RateLimitVerdict | undefined;
  for (const p of policies) {
    if (p.connections === undefined) continue;
    const key = `${p.namespace}/${p.name}`;
    const r = buckets.take(`rl|${key}|connections`, shapeOf(p.connections));
    if (r.allowed) continue;
    if (p.mode === 'Shadow') shadow ??= { allowed: true, policy: key, shadow: true, retryAfterMs: r.retryAfterMs };
    else return { allowed: false, policy: key, retryAfterMs: r.retryAfterMs };
  }
  return shadow ?? ALLOWED;
}
