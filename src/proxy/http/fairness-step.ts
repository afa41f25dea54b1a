// The first caller-side step: a request of a source pod that is saturating this worker waits
// for its turn (proxy/resilience/source-fairness.ts) before it is routed on; past the bound
// of waiting requests it is answered 503 with the flag OL at once. Other pods' requests go
// straight on. Keyed by the calling pod's address on this node.

import { ResponseFlags } from '../flags.ts';
import type { SourceFairness } from '../resilience/source-fairness.ts';
import type { RequestStep } from './exchange.ts';
import { GrpcStatus, sendLocalReply } from './local-reply.ts';

export function fairnessStep(fairness: Pick<SourceFairness, 'admit'>): RequestStep {
  return async (x, next) => {
    const admission = fairness.admit(x.connection.clientIp, 'request', x.signal);
    if (admission !== 'now' && await admission === 'refused') {
      if (x.signal.aborted) {
        x.flags = ResponseFlags.DOWNSTREAM_RESET;
        x.detail = 'the client left while its request was held back (its pod was saturating the agent)';
        x.sink.abort();
        return;
      }
      sendLocalReply(x, {
        status: 503, flags: ResponseFlags.OVERLOADED, message: 'overloaded: this pod is sending more than its share of the node\'s proxy',
        detail: 'held back for fair sharing and too many of its requests already waiting', grpcStatus: GrpcStatus.UNAVAILABLE,
      });
      return;
    }
    await next();
  };
}
