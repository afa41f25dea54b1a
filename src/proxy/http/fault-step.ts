// Fault injection at the caller's agent, for chaos testing: the FaultInjections a route's
// ExtensionRef filters name (Forward.faults) delay a share of requests by a fixed time and
// abort a share with an HTTP status (gRPC calls: a gRPC status), as Istio's HTTPFaultInjection
// and Envoy's fault filter (delay first, then abort; flags DI and FI). It runs before the
// retry step, so an injected abort is never retried away. A FaultInjection the route names but
// the snapshot lacks fails the request with 500 (the Gateway API rule for an ExtensionRef that
// cannot be carried out; `weft vet` warns of it). Draws are evenly spread per FaultInjection
// (core/even-draws.ts), one sequence per worker thread.

import { setTimeout as sleep } from 'node:timers/promises';

import type { FaultInjectionObject } from '../../model/traffic-policy-types.ts';
import { ResponseFlags } from '../flags.ts';
import { EvenDraws } from '../../core/even-draws.ts';
import { faultFor } from '../resilience/fault-decision.ts';
import type { Exchange, RequestStep } from './exchange.ts';
import { GrpcStatus, sendLocalReply } from './local-reply.ts';

export interface FaultStepDeps {
  /** A FaultInjection by `namespace/name`, from the current snapshot. */
  readonly fault: (key: string) => FaultInjectionObject | undefined;
  /** Counts one injected fault (`weft_fault_injected_total`). */
  readonly injected?: (fault: string, kind: 'delay' | 'abort') => void;
  /** Start of each FaultInjection's draw sequences, in [0, 1). Default Math.random. */
  readonly random?: () => number;
}

/** Sequences remembered at most; past it the oldest is dropped (it restarts spread evenly). */
const MAX_SEQUENCES = 10_000;

export function faultStep(deps: FaultStepDeps): RequestStep {
  const random = deps.random ?? Math.random;
  const sequences = new Map<string, { delay: EvenDraws; abort: EvenDraws }>();
  const drawsOf = (key: string): { delay: EvenDraws; abort: EvenDraws } => {
    let s = sequences.get(key);
    if (s === undefined) {
      if (sequences.size >= MAX_SEQUENCES) sequences.delete(sequences.keys().next().value as string);
      s = { delay: new EvenDraws(random()), abort: new EvenDraws(random()) };
      sequences.set(key, s);
    }
    return s;
  };
  const inject = async (x: Exchange, next: () => Promise<void>, keys: readonly string[]): Promise<void> => {
    let delayed = false;
    for (const key of keys) {
      const f = deps.fault(key);
      if (f === undefined) {
        sendLocalReply(x, {
          status: 500, flags: ResponseFlags.NO_ROUTE, message: 'fault filter configuration missing', grpcStatus: GrpcStatus.UNAVAILABLE,
          detail: `the route names FaultInjection ${key}, which does not exist`,
        });
        return;
      }
      const draws = drawsOf(key);
      const d = faultFor(f, draws.delay.next(), draws.abort.next());
      if (d.delayMs > 0) {
        deps.injected?.(key, 'delay');
        delayed = true;
        try {
          await sleep(d.delayMs, undefined, { signal: x.signal, ref: false });
        } catch {
          x.flags = ResponseFlags.DOWNSTREAM_RESET;
          x.detail = 'the client left during an injected delay';
          x.sink.abort();
          return;
        }
      }
      if (d.abort !== undefined) {
        deps.injected?.(key, 'abort');
        sendLocalReply(x, {
          status: d.abort.httpStatus, flags: ResponseFlags.FAULT_INJECTED, message: 'fault filter abort', detail: `FaultInjection ${key}`,
          ...(d.abort.grpcStatus === undefined ? {} : { grpcStatus: d.abort.grpcStatus }),
        });
        return;
      }
    }
    await next();
    if (delayed && x.flags === ResponseFlags.OK) x.flags = ResponseFlags.DELAY_INJECTED;
  };
  // Not async: a route without faults (most) costs no promise of this step's own.
  return (x, next) => {
    const keys = x.decision?.kind === 'forward' ? x.decision.faults ?? [] : [];
    return keys.length === 0 ? next() : inject(x, next, keys);
  };
}
