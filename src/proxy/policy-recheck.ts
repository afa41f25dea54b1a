// Live re-check (issue 9, point 4): when the mesh changes, every open connection is judged
// again by what it was allowed under, against the new state. A connection that the new
// AuthorizationPolicy denies, or a plaintext one into a pod that is now STRICT, gets the
// ending that closes it (reset), naming the policy; the others are left alone.

import { authorize, type AuthorizationRequest, type PolicyView } from '../model/authorize.ts';
import type { MtlsDecision } from '../model/peer-authentication.ts';
import type { Workload } from '../model/types.ts';
import type { ConnectionEnding, LiveConnection } from './connection-registry.ts';
import { ResponseFlags } from './flags.ts';

/** What the re-check reads of the new state. */
export interface RecheckView extends PolicyView {
  workloadByIp(ip: string): Workload | undefined;
  mtlsModeFor(workload: Workload): MtlsDecision;
}

/** The workload as the new state has it (labels may have changed), else the one checked before. */
function current(view: RecheckView, w: Workload): Workload {
  const fresh = w.ip === undefined ? undefined : view.workloadByIp(w.ip);
  return fresh?.key === w.key ? fresh : w;
}

/** How `c` must end under the new state, or undefined when it may go on. */
export function recheckEnding(view: RecheckView, c: Pick<LiveConnection, 'listener' | 'authorized'>): ConnectionEnding | undefined {
  return recheckJudge(view)(c);
}

/**
 * recheckEnding for many connections against one state. Thousands of open connections carry a
 * handful of distinct L4 requests (a source pod, a destination pod and port), so each distinct
 * one is judged once and every connection that carries it gets the same ending object.
 */
export function recheckJudge(view: RecheckView): (c: Pick<LiveConnection, 'listener' | 'authorized'>) => ConnectionEnding | undefined {
  const judged = new Map<string, ConnectionEnding | null>();
  const judge = (listener: LiveConnection['listener'], before: AuthorizationRequest): ConnectionEnding | undefined => {
    const request: AuthorizationRequest = { ...before, destinationWorkload: current(view, before.destinationWorkload) };
    if (listener === 'inbound-plain') {
      const mtls = view.mtlsModeFor(request.destinationWorkload);
      if (mtls.mode === 'STRICT') {
        return { flags: ResponseFlags.MTLS_REQUIRED, detail: `closed by a policy change: ${request.destinationWorkload.key} takes mTLS only now (PeerAuthentication ${mtls.policy ?? '?'} is STRICT)` };
      }
    }
    const decision = authorize(view, request);
    if (!decision.allowed) {
      return { flags: ResponseFlags.DENIED, detail: `closed by a policy change: ${decision.policy === undefined ? '' : `policy ${decision.policy}: `}${decision.reason}` };
    }
    return undefined;
  };
  return (c) => {
    for (const before of c.authorized) {
      // An HTTP request's attributes are not in the key: those are judged one by one.
      const key = before.http === undefined
        ? `${c.listener}\u0001${before.sourcePrincipal ?? ''}\u0001${before.sourceNamespace ?? ''}\u0001${before.sourceIp}\u0001${before.destinationWorkload.key}\u0001${before.destinationWorkload.ip ?? ''}\u0001${before.destinationPort}`
        : undefined;
      let ending = key === undefined ? undefined : judged.get(key);
      if (ending === undefined) {
        ending = judge(c.listener, before) ?? null;
        if (key !== undefined) judged.set(key, ending);
      }
      if (ending !== null) return ending;
    }
    return undefined;
  };
}
