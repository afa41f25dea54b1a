// The route step: asks the route decider where the request goes, answers redirects and
// rejections itself, and applies a forward's URL rewrite and request header modifiers to
// the outgoing request. A request to a pod address (no Service) has no route.

import { ResponseFlags } from '../flags.ts';
import type { RouteDecider } from './contracts.ts';
import type { RequestStep } from './exchange.ts';
import { applyHeaderModifiers } from './headers.ts';
import { sendLocalReply } from './local-reply.ts';

const DONE: Promise<void> = Promise.resolve();

export function routeStep(decide: RouteDecider): RequestStep {
  // Not async: forwarding is the last thing it does, so the pipeline's promise is its own.
  return (x, next) => {
    const d = x.connection.destination;
    if (d.kind !== 'service') return next();
    const r = x.request;
    const decision = decide(d.service, {
      method: r.method, path: r.path, headers: r.headers, authority: r.authority, grpc: r.grpc, sourceNamespace: x.connection.sourceNamespace,
    });
    x.decision = decision;
    switch (decision.kind) {
      case 'redirect':
        sendLocalReply(x, { status: decision.status, flags: ResponseFlags.OK, message: '', headers: { location: decision.location } });
        return DONE;
      case 'reject':
        sendLocalReply(x, {
          status: decision.status, flags: ResponseFlags.NO_ROUTE, message: decision.status === 404 ? 'route not found' : 'invalid backend',
          detail: decision.reason, grpcStatus: decision.grpcStatus,
        });
        return DONE;
      case 'forward':
        if (decision.rewrite?.path !== undefined) x.outgoing.path = decision.rewrite.path;
        if (decision.rewrite?.authority !== undefined) x.outgoing.authority = decision.rewrite.authority;
        applyHeaderModifiers(x.outgoing.headers, decision.requestHeaders);
        return next();
    }
  };
}
