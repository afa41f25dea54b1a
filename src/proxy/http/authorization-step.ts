// L7 authorization at the destination agent: every request arriving through the tunnel is
// checked against the destination workload's AuthorizationPolicies with its method, path,
// host and headers (Istio's semantics, model/l7-authorization.ts), after the stream itself
// was admitted for per-request checks. A denial is HTTP 403 `RBAC: access denied` (gRPC:
// PERMISSION_DENIED), flagged, counted and logged with the request's record like any other.

import type { HttpAttributes } from '../../model/l7-authorization.ts';
import type { Authorizer } from '../contracts.ts';
import { ResponseFlags } from '../flags.ts';
import type { OutboundTarget } from '../outbound-route.ts';
import type { Exchange, RequestStep } from './exchange.ts';
import { GrpcStatus, sendLocalReply } from './local-reply.ts';

/** What policy sees of a request: as it goes upstream (after any rewrite), with the client's headers. */
export function httpAttributes(x: Exchange): HttpAttributes {
  return { method: x.request.method, path: x.outgoing.path, host: x.outgoing.authority ?? x.request.authority, headers: x.request.headers };
}

/** Answers a request policy refused. */
export function denyRequest(x: Exchange, reason: string): void {
  sendLocalReply(x, { status: 403, flags: ResponseFlags.DENIED, message: 'RBAC: access denied', detail: `denied: ${reason}`, grpcStatus: GrpcStatus.PERMISSION_DENIED });
}

/**
 * The source side's check of one picked endpoint (an enrolled pod; others are not ours to
 * judge), with the request's HTTP attributes, so L7 rules of a pod on this node hold here.
 * Denied: answers 403 and returns false. Allowed: the connection's live record remembers the
 * request, so a later policy change can re-judge it.
 */
export function authorizeEndpoint(authorize: Authorizer, x: Exchange, target: Pick<OutboundTarget, 'workload' | 'port'>): boolean {
  const c = x.connection;
  const w = target.workload;
  if (!c.checkPolicy || w === undefined || !w.enrolled) return true;
  const request = {
    sourcePrincipal: c.sourceIdentity, sourceNamespace: c.sourceNamespace, sourceIp: c.clientIp, destinationWorkload: w, destinationPort: target.port,
    http: httpAttributes(x),
  };
  const decision = authorize(request);
  if (!decision.allowed) {
    denyRequest(x, decision.reason);
    return false;
  }
  x.live.allowed(request);
  return true;
}

/** The destination side's per-request check (a request to a local pod, not to a Service). */
export function requestAuthorizationStep(authorize: Authorizer): RequestStep {
  return async (x, next) => {
    const c = x.connection;
    const d = c.destination;
    const w = d.kind === 'workload' ? d.target.workload : undefined;
    if (w === undefined || !w.enrolled) return next();
    const decision = authorize({
      sourcePrincipal: c.sourceIdentity, sourceNamespace: c.sourceNamespace, sourceIp: c.clientIp, destinationWorkload: w,
      destinationPort: d.kind === 'workload' ? d.target.port : 0, http: httpAttributes(x),
    });
    if (!decision.allowed) {
      denyRequest(x, decision.reason);
      return;
    }
    await next();
  };
}
