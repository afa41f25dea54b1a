// Rate limits at the destination agent: each tunnelled request to a local pod draws on the
// buckets of the RateLimitPolicies that apply to it (proxy/resilience/rate-limit-decision.ts,
// one table shared by all of the agent's workers). Refused: HTTP 429 with `retry-after`
// (whole seconds, at least 1), gRPC RESOURCE_EXHAUSTED, flag RL; Shadow policies only count.
// A request from a pod on the same node never reaches the tunnel: the forward step admits it
// with admitRateLimited before going straight to the pod (HttpLayerDeps.admitLocal).

import type { RateLimitPolicyObject } from '../../model/traffic-policy-types.ts';
import type { Workload } from '../../model/types.ts';
import { ResponseFlags } from '../flags.ts';
import { rateLimitVerdict, type Buckets } from '../resilience/rate-limit-decision.ts';
import type { Exchange, RequestStep } from './exchange.ts';
import { GrpcStatus, sendLocalReply } from './local-reply.ts';

export interface RateLimitStepDeps {
  /** The RateLimitPolicies that apply to a workload (from the current snapshot). */
  readonly policiesFor: (w: Workload) => readonly RateLimitPolicyObject[];
  readonly buckets: Buckets;
  /** Counts one request a policy refused (`shadow`: would have refused). */
  readonly limited?: (policy: string, shadow: boolean) => void;
}

/** Draws the request's tokens for a pod of this node; false when it was refused (and answered). */
export function admitRateLimited(deps: RateLimitStepDeps, x: Exchange, w: Workload): boolean {
  const policies = deps.policiesFor(w);
  if (policies.length === 0) return true;
  const v = rateLimitVerdict(policies, x.connection.sourceIdentity === '' ? undefined : x.connection.sourceIdentity, deps.buckets);
  if (v.policy !== undefined) deps.limited?.(v.policy, v.shadow === true);
  if (v.allowed) return true;
  sendLocalReply(x, {
    status: 429, flags: ResponseFlags.RATE_LIMITED, message: 'local_rate_limited', detail: `rate limited by RateLimitPolicy ${v.policy ?? ''}`,
    grpcStatus: GrpcStatus.RESOURCE_EXHAUSTED, headers: { 'retry-after': String(Math.max(1, Math.ceil((v.retryAfterMs ?? 1000) / 1000))) },
  });
  return false;
}

/** The destination side's step (a tunnelled request to a local pod). */
export function rateLimitStep(deps: RateLimitStepDeps): RequestStep {
  return async (x, next) => {
    const d = x.connection.destination;
    const w = d.kind === 'workload' ? d.target.workload : undefined;
    if (w !== undefined && !admitRateLimited(deps, x, w)) return;
    await next();
  };
}
