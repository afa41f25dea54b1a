// Per-request load balancing, as Linkerd does it: power of two choices over a load of
// peak-EWMA latency x (in-flight + 1). The latency estimate jumps to any slower sample at
// once (peak) and otherwise decays towards newer samples with time constant `decayMs`; the
// load decays towards 0 while an endpoint is idle, so it is tried again. New endpoints
// start at `defaultRttMs`. Linkerd's defaults: 30 ms and 10 s. Pure functions over plain
// state; the balancer holds the states.

export interface EwmaOptions {
  readonly defaultRttMs: number;
  readonly decayMs: number;
}

export const LINKERD_EWMA: EwmaOptions = Object.freeze({ defaultRttMs: 30, decayMs: 10_000 });

export interface EwmaState {
  /** Latency estimate, ms, as of `stamp`. */
  cost: number;
  /** Monotonic ms of the last update. */
  stamp: number;
  /** Requests in flight. */
  pending: number;
}

export function newEwma(now: number, o: EwmaOptions): EwmaState {
  return { cost: o.defaultRttMs, stamp: now, pending: 0 };
}

function weightSince(s: EwmaState, now: number, o: EwmaOptions): number {
  return Math.exp(-Math.max(0, now - s.stamp) / o.decayMs);
}

/** Folds one latency sample in (Finagle's PeakEwma.observe). */
export function observe(s: EwmaState, rttMs: number, now: number, o: EwmaOptions): void {
  const w = weightSince(s, now, o);
  s.cost = rttMs > s.cost ? rttMs : s.cost * w + rttMs * (1 - w);
  s.stamp = Math.max(s.stamp, now);
}

/** The load P2C compares: the estimate decayed to now, times (in flight + 1). */
export function ewmaLoad(s: EwmaState, now: number, o: EwmaOptions): number {
  return s.cost * weightSince(s, now, o) * (s.pending + 1);
}

export interface Candidate<E> {
  readonly endpoint: E;
  readonly load: number;
  /** Relative capacity (> 0). */
  readonly weight: number;
}

/**
 * Two distinct candidates drawn uniformly with `r1`, `r2` in [0, 1), the lower load per
 * weight wins (ties: the first). One candidate is returned as is; none gives undefined.
 */
export function powerOfTwo<E>(candidates: readonly Candidate<E>[], r1: number, r2: number): E | undefined {
  const n = candidates.length;
  if (n === 0) return undefined;
  if (n === 1) return candidates[0]?.endpoint;
  const i = Math.min(n - 1, Math.floor(r1 * n));
  let j = Math.min(n - 2, Math.floor(r2 * (n - 1)));
  if (j >= i) j += 1;
  const a = candidates[i];
  const b = candidates[j];
  return b.load / b.weight < a.load / a.weight ? b.endpoint : a.endpoint;
}
