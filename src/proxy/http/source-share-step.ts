// The first caller-side step: each request takes a slot of its source pod's share of this
// worker (proxy/resilience/source-shares.ts) for as long as it is served, so one pod flooding
// its node's agent waits for its own earlier requests while other pods' requests go straight
// on. Keyed by the calling pod's address on this node.

import { ResponseFlags } from '../flags.ts';
import type { SourceShares } from '../resilience/source-shares.ts';
import type { Exchange, RequestStep } from './exchange.ts';

export interface SourceShareDeps {
  readonly shares: SourceShares;
  /** Counts one request that waited for its source's share (`weft_source_request_waits_total`). */
  readonly waited?: (source: { readonly namespace?: string; readonly workload?: string }) => void;
}

export function sourceShareStep(deps: SourceShareDeps): RequestStep {
  return (x, next) => {
    // A free slot needs no promise of its own (every request passes here).
    const free = deps.shares.tryAcquire(x.connection.clientIp);
    return free === undefined ? waitForShare(deps, x, next) : holding(next, free);
  };
}

async function holding(next: () => Promise<void>, release: () => void): Promise<void> {
  try {
    await next();
  } finally {
    release();
  }
}

async function waitForShare(deps: SourceShareDeps, x: Exchange, next: () => Promise<void>): Promise<void> {
  let slot: Awaited<ReturnType<SourceShares['acquire']>>;
  try {
    slot = await deps.shares.acquire(x.connection.clientIp, x.signal);
  } catch {
    x.flags = ResponseFlags.DOWNSTREAM_RESET;
    x.detail = 'the client left while its request waited for its share of the agent';
    x.sink.abort();
    return;
  }
  if (slot.waited) deps.waited?.(x.connection.source);
  await holding(next, slot.release);
}
