// Reconnect backoff for the agent-side client; timers come from core/scheduler.ts, injected
// so tests can use short caps or drive time by hand.

export { systemScheduler, type Scheduler, type TimerHandle } from '../core/scheduler.ts';

export interface ReconnectBackoff {
  /** First retry delay; 100 ms by default. */
  readonly initialMs: number;
  /** Cap; 10 s by default. */
  readonly maxMs: number;
}

export const DEFAULT_RECONNECT_BACKOFF: ReconnectBackoff = Object.freeze({ initialMs: 100, maxMs: 10_000 });

/**
 * Delay before retry number `attempt` (0-based): exponential, capped, with "equal jitter" —
 * between half and all of the exponential value, so agents that lost the control plane
 * together do not return in lockstep, yet none retries sooner than half its step.
 */
export function reconnectDelay(policy: ReconnectBackoff, attempt: number, random: () => number): number {
  const step = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + (step / 2) * Math.min(Math.max(random(), 0), 1));
}
