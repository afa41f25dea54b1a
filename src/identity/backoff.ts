// Retry delays for certificate requests: exponential, capped, jittered so a fleet of agents
// that lost the control plane together does not come back in lockstep.

export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ initialMs: 1_000, maxMs: 150_000 });

/**
 * Delay before retry number `failures` (1 after the first failure). The base doubles per
 * failure up to maxMs; the result is uniform in [base/2, base], so it never exceeds maxMs.
 */
export function backoffDelay(failures: number, policy: BackoffPolicy, random: () => number): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 52);
  const base = Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
  return Math.round(base / 2 + (random() * base) / 2);
}
