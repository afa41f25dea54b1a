// The HTTP layer of the node proxy: HTTP/1.1, h2c and gRPC served request by request on the
// outbound side (routing, per-request P2C peak-EWMA balancing, pooled upstreams through the
// same connector as L4), and the protocol selector that forks connections to it.

export {
  NO_REQUEST_TELEMETRY, defaultRoute,
  type BackendTarget, type Forward, type HeaderModifier, type HttpMeshView, type Redirect, type Reject, type RequestDescription,
  type RequestHeaders, type RequestObserver, type RequestOutcome, type RequestRecord, type RouteDecider, type RouteDecision, type RouteRequest,
} from './contracts.ts';
export { HttpLayer, type HttpLayerDeps, type HttpLayerOptions } from './layer.ts';
export { requestAuthorizationStep } from './authorization-step.ts';
export { admitRateLimited, rateLimitStep, type RateLimitStepDeps } from './rate-limit-step.ts';
export { circuitBreakerStep } from './circuit-breaker-step.ts';
export { retryStep, type RetryBudgetLike, type RetryStepDeps } from './retry-step.ts';
export { faultStep, type FaultStepDeps } from './fault-step.ts';
export { sourceShareStep, type SourceShareDeps } from './source-share-step.ts';
export { fairnessStep } from './fairness-step.ts';
export { Exchange, composeSteps, type DownstreamRequest, type OutgoingParts, type RequestStep } from './exchange.ts';
export { sendLocalReply, GrpcStatus, grpcStatusForHttp, type LocalReply } from './local-reply.ts';
export { RequestBalancer, type InFlightRequest, type RequestBalancerOptions } from './request-balancer.ts';
export { LINKERD_EWMA, type EwmaOptions } from './peak-ewma.ts';
export { LINKERD_ACCRUAL, type AccrualOptions } from './failure-accrual.ts';
export { protocolSelector, peekClient, type SniffOptions } from '../sniff.ts';
export { portDecision, classifyClientBytes, SERVER_FIRST_PORTS, type PortDecision } from '../protocol-select.ts';
