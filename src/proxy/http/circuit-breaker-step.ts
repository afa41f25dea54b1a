// Circuit breaking at the caller's agent, as Istio's DestinationRule connectionPool: the
// DestinationPolicy of the Service a request is routed to bounds the requests outstanding to
// it from this agent (http.maxPendingRequests: waiting for or holding an upstream
// connection); one over is answered 503 with the flag UO at once, never queued. The counters
// are shared by every worker of the agent.

import type { DestinationPolicyObject } from '../../model/traffic-policy-types.ts';
import { ResponseFlags } from '../flags.ts';
import type { ConcurrencyLimits } from '../resilience/concurrency-limit.ts';
import type { Exchange, RequestStep } from './exchange.ts';
import { GrpcStatus, sendLocalReply } from './local-reply.ts';

export interface CircuitBreakerDeps {
  /** The DestinationPolicy of a Service (`namespace/name`), if it has one. */
  readonly policyFor: (serviceKey: string) => DestinationPolicyObject | undefined;
  readonly limits: ConcurrencyLimits;
  /** Counts one request refused for the Service's pool. */
  readonly overflowed?: (serviceKey: string) => void;
}

export function circuitBreakerStep(deps: CircuitBreakerDeps): RequestStep {
  // Not async: a Service without maxPendingRequests (most) costs no promise of this step's own.
  return (x, next) => {
    const d = x.decision;
    const service = d?.kind === 'forward' ? d.backend.serviceKey : undefined;
    const max = service === undefined ? undefined : deps.policyFor(service)?.connectionPool.maxPendingRequests;
    if (service === undefined || max === undefined) return next();
    return bounded(deps, x, next, service, max);
  };
}

async function bounded(deps: CircuitBreakerDeps, x: Exchange, next: () => Promise<void>, service: string, max: number): Promise<void> {
  const permit = deps.limits.tryAcquire(`pending|${service}`, max);
  if (permit === undefined) {
    deps.overflowed?.(service);
    sendLocalReply(x, {
      status: 503, flags: ResponseFlags.UPSTREAM_OVERFLOW, message: 'upstream connect error or disconnect/reset before headers. reset reason: overflow',
      detail: `DestinationPolicy of ${service}: ${max} pending requests at most`, grpcStatus: GrpcStatus.UNAVAILABLE,
    });
    return;
  }
  try {
    await next();
  } finally {
    permit.release();
  }
}
