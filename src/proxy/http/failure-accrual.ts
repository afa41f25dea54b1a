// Failure accrual per endpoint, as Linkerd does it for requests: `consecutiveFailures`
// failures in a row (connect errors, 5xx) eject an endpoint for a backoff that doubles per
// ejection in a row (from minBackoffMs to maxBackoffMs) with random jitter; when it runs out
// the endpoint is on probation: it gets one request, and its outcome re-admits it or ejects
// it again for longer. Linkerd's defaults: 7 failures, 1 s to 60 s, jitter 0.5. Pure.

export interface AccrualOptions {
  readonly consecutiveFailures: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  /** Backoff is stretched by up to this fraction, at random. */
  readonly jitter: number;
}

export const LINKERD_ACCRUAL: AccrualOptions = Object.freeze({ consecutiveFailures: 7, minBackoffMs: 1_000, maxBackoffMs: 60_000, jitter: 0.5 });

export type AccrualState =
  | { readonly kind: 'healthy'; readonly failures: number }
  | { readonly kind: 'ejected'; readonly until: number; readonly ejections: number }
  /** Backoff over: one probe request may go; `probing` while it is in flight. */
  | { readonly kind: 'probation'; readonly ejections: number; readonly probing: boolean };

export const HEALTHY: AccrualState = Object.freeze({ kind: 'healthy', failures: 0 });

/** The backoff of the n-th ejection in a row (n >= 1), jittered by `random` in [0, 1). */
export function backoffMs(n: number, random: number, o: AccrualOptions): number {
  const base = Math.min(o.maxBackoffMs, o.minBackoffMs * 2 ** Math.max(0, n - 1));
  return Math.min(o.maxBackoffMs, base * (1 + o.jitter * random));
}

/** Moves an ejection whose backoff ran out to probation. */
export function current(s: AccrualState, now: number): AccrualState {
  return s.kind === 'ejected' && now >= s.until ? { kind: 'probation', ejections: s.ejections, probing: false } : s;
}

/** Whether a new request may go to the endpoint. */
export function admits(s: AccrualState, now: number): boolean {
  const c = current(s, now);
  return c.kind === 'healthy' || (c.kind === 'probation' && !c.probing);
}

/** A request is sent to the endpoint (marks the probe). */
export function dispatched(s: AccrualState, now: number): AccrualState {
  const c = current(s, now);
  return c.kind === 'probation' ? { ...c, probing: true } : c;
}

/** The outcome of a request to the endpoint. */
export function record(s: AccrualState, ok: boolean, now: number, random: number, o: AccrualOptions): AccrualState {
  const c = current(s, now);
  if (ok) return HEALTHY;
  switch (c.kind) {
    case 'healthy': {
      const failures = c.failures + 1;
      if (failures < o.consecutiveFailures) return { kind: 'healthy', failures };
      return { kind: 'ejected', until: now + backoffMs(1, random, o), ejections: 1 };
    }
    case 'probation':
      return { kind: 'ejected', until: now + backoffMs(c.ejections + 1, random, o), ejections: c.ejections + 1 };
    case 'ejected':
      // A request that was in flight when the endpoint was ejected: already counted out.
      return c;
  }
}
