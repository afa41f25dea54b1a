// Fair sharing of one proxy worker's event loop between the pods that call through it. Static
// caps (connections, requests in flight) do not stop a pod that opens connections and sends
// requests as fast as it can: once the loop is saturated, every other pod's request waits
// behind the flood's I/O callbacks, whatever the caps say. So each worker keeps itself
// unsaturated, as Envoy's overload manager does with its resource monitors, but by source:
// every `intervalMs` it reads its event loop's utilisation (ELU, the share of the interval it
// was busy); when that reaches `highWater` it holds back the source that asked for most of
// the work (new connections and requests; 60% or more by default) with a token bucket at half its rate,
// halving again while the loop stays busy, and lets it back up by 5% each interval the
// loop is below `lowWater`, lifting the limit once the source no longer uses it (AIMD, as TCP's
// congestion window). A held source's connections wait before they are served (nothing is read
// from them, so kernel backpressure slows the sender) and its requests wait before they are
// forwarded; past `maxWaiting` waiting requests, more are refused (waiting connections are
// bounded by the per-source descriptor cap they already hold, so they are never refused here:
// a refusal would only give the descriptors back for the next). Other sources are never held while
// they are not the heaviest, and a source alone on the worker is never held (there is nobody
// to protect). Decisions are pure (fairnessDecision), the loop probe and the timer are
// injected.

import { ProxyErrors, proxyError } from '../errors.ts';

export interface FairnessLimits {
  /** Event-loop utilisation (0..1) at which the heaviest source is held back. Default 0.8. */
  readonly highWater: number;
  /** Utilisation below which held sources are let back up. Default 0.5. */
  readonly lowWater: number;
  /** How often the loop is read and limits are adjusted, ms. Default 50. */
  readonly intervalMs: number;
  /**
   * Admissions per second (this worker) a source may always have: one asking for no more is
   * never held, and a held one is never limited below it. Default 100.
   */
  readonly minRate: number;
  /** Requests of one source waiting at once (this worker); more are refused. Default 256. Connections are bounded by the descriptor caps. */
  readonly maxWaiting: number;
  /**
   * Share (0..1) of the admissions asked for (smoothed rates) the heaviest source must have to
   * be held. Default 0.6: two or more sources loading a worker evenly are never held.
   */
  readonly minShare: number;
}

export const DEFAULT_FAIRNESS_LIMITS: FairnessLimits = Object.freeze({
  highWater: 0.8, lowWater: 0.5, intervalMs: 50, minRate: 100, maxWaiting: 256, minShare: 0.6,
});

/** Validates limits (the agent's flags, a test's options); throws WEFT_PROXY_BAD_OPTION naming the field. */
export function fairnessLimits(o: Partial<FairnessLimits> = {}): FairnessLimits {
  const l = { ...DEFAULT_FAIRNESS_LIMITS, ...o };
  const bad = (field: string, why: string): never => {
    throw proxyError(ProxyErrors.BAD_OPTION, `fairness ${field} ${why}, got ${String(l[field as keyof FairnessLimits])}`);
  };
  if (!(l.highWater > 0 && l.highWater <= 1)) bad('highWater', 'must be in (0, 1]');
  if (!(l.lowWater >= 0 && l.lowWater < l.highWater)) bad('lowWater', 'must be in [0, highWater)');
  if (!Number.isInteger(l.intervalMs) || l.intervalMs < 5 || l.intervalMs > 10_000) bad('intervalMs', 'must be an integer 5-10000');
  if (!(l.minRate > 0 && Number.isFinite(l.minRate))) bad('minRate', 'must be a positive number');
  if (!Number.isInteger(l.maxWaiting) || l.maxWaiting < 0) bad('maxWaiting', 'must be an integer >= 0');
  if (!(l.minShare > 0 && l.minShare <= 1)) bad('minShare', 'must be in (0, 1]');
  return Object.freeze(l);
}

/** What one interval saw: the loop's utilisation, each source's admissions asked for, and the sources held now (admissions per second). */
export interface FairnessInput {
  readonly utilization: number;
  readonly intervalMs: number;
  /** Admissions each source asked for in this interval. */
  readonly asked: ReadonlyMap<string, number>;
  /**
   * Each source's admissions per second asked for, smoothed over about a second (one
   * interval is too short to tell a steady caller from a burst); the heaviest is found by it.
   */
  readonly rates: ReadonlyMap<string, number>;
  readonly held: ReadonlyMap<string, number>;
  /** Admissions of held sources waiting now (a source with some is never let go, only let up). */
  readonly waiting: ReadonlyMap<string, number>;
  /** Sources seen within the last second (the neighbours a held source is held for). */
  readonly recentSources: number;
}

/** The new rate of every source to hold (absent: not held), and which one was newly held back or cut further. */
export interface FairnessOutcome {
  readonly held: ReadonlyMap<string, number>;
  readonly cut: string | undefined;
}

const DECREASE = 0.5;
/** Per interval below the low water: +5% (about 2.6x a second at 50 ms), so the rate creeps back up rather than overshooting into the next stall. */
const INCREASE = 1.05;
/** A held source's admissions come at most this many ms' worth at once: a burst of them would hold up the loop in one turn. */
const BURST_MS = 5;

/** Pure: the next interval's limits. */
export function fairnessDecision(input: FairnessInput, limits: FairnessLimits): FairnessOutcome {
  const held = new Map(input.held);
  const seconds = input.intervalMs / 1000;
  if (input.utilization >= limits.highWater && input.recentSources >= 2) {
    let heaviest: string | undefined;
    let most = 0;
    let total = 0;
    for (const [source, r] of input.rates) {
      total += r;
      if (r > most) {
        most = r;
        heaviest = source;
      }
    }
    if (heaviest === undefined || most < limits.minShare * total || most <= limits.minRate) return { held, cut: undefined };
    const current = Math.min(held.get(heaviest) ?? Infinity, most);
    held.set(heaviest, Math.max(limits.minRate, current * DECREASE));
    return { held, cut: heaviest };
  }
  if (input.utilization < limits.lowWater) {
    for (const [source, rate] of input.held) {
      const used = (input.asked.get(source) ?? 0) / seconds;
      // It asks for less than half of what it may have and nothing waits: the limit no longer
      // matters. (Let go with admissions waiting, they would all come through at once.)
      if (used < rate / 2 && (input.waiting.get(source) ?? 0) === 0) held.delete(source);
      else held.set(source, rate * INCREASE);
    }
  }
  return { held, cut: undefined };
}

/** How one admission went: 'now' (not held), 'waited' (held, then let through), or 'refused' (too many waiting, or the signal fired). */
export type Admission = 'now' | 'waited' | 'refused';

/** What an admission is for, in the counters. */
export type AdmissionKind = 'connection' | 'request';

export interface FairnessObserver {
  /** A source was held back, or cut further (once per decision). */
  held?(source: string, rate: number): void;
  /** One connection or request waited (outcome 'waited') or was refused. */
  admitted?(source: string, kind: AdmissionKind, outcome: Exclude<Admission, 'now'>): void;
}

export interface SourceFairnessDeps {
  /** The loop's utilisation since the previous call (0..1); performance.eventLoopUtilization in the agent. */
  readonly utilization: () => number;
  /** Monotonic ms. */
  readonly now: () => number;
  readonly observer?: FairnessObserver;
  /** Index 2: sources held back, all workers together (the memory reclaimer waits while any is). */
  readonly shared?: Int32Array;
  /** Runs `tick` every interval; returns a stopper. Default an unref'd setInterval. */
  readonly every?: (ms: number, tick: () => void) => () => void;
}

interface Bucket {
  rate: number;
  tokens: number;
  at: number;
  readonly waiting: { go(ok: boolean): void }[];
  /** Of `waiting`, how many are requests. */
  requests: number;
  timer: NodeJS.Timeout | undefined;
}

/** Moves each source's smoothed rate towards this interval's (a time constant of ~1 s); forgets sources gone quiet. */
export function smooth(rates: Map<string, number>, asked: ReadonlyMap<string, number>, intervalMs: number): void {
  const alpha = Math.min(1, intervalMs / 1000);
  for (const [source, r] of rates) {
    const next = r + alpha * ((asked.get(source) ?? 0) * (1000 / intervalMs) - r);
    if (next < 0.5 && !asked.has(source)) rates.delete(source);
    else rates.set(source, next);
  }
  for (const [source, n] of asked) if (!rates.has(source)) rates.set(source, alpha * n * (1000 / intervalMs));
}

const realEvery = (ms: number, tick: () => void): (() => void) => {
  const t = setInterval(tick, ms);
  t.unref();
  return () => clearInterval(t);
};

/** One worker's fairness: admissions by source, the loop probe, and the buckets of held sources. */
export class SourceFairness {
  readonly limits: FairnessLimits;
  readonly #deps: SourceFairnessDeps;
  #asked = new Map<string, number>();
  readonly #rates = new Map<string, number>();
  readonly #lastSeen = new Map<string, number>();
  readonly #buckets = new Map<string, Bucket>();
  #stop: (() => void) | undefined;
  #lastUtilization = 0;

  constructor(limits: FairnessLimits, deps: SourceFairnessDeps) {
    this.limits = limits;
    this.#deps = deps;
  }

  /** Starts reading the loop. Safe to call twice. */
  start(): void {
    this.#stop ??= (this.#deps.every ?? realEvery)(this.limits.intervalMs, () => this.tick());
  }

  /** Stops reading the loop and lets every waiting admission through. Safe to call twice. */
  close(): void {
    this.#stop?.();
    this.#stop = undefined;
    for (const b of this.#buckets.values()) this.#release(b, true);
    this.#count(-this.#buckets.size);
    this.#buckets.clear();
  }

  /** The loop's utilisation in the last interval. */
  get utilization(): number {
    return this.#lastUtilization;
  }

  /** Sources held now and their rates (admissions per second), for the admin page and tests. */
  held(): ReadonlyMap<string, number> {
    return new Map([...this.#buckets].map(([s, b]) => [s, b.rate]));
  }

  /** Waiting admissions of `source`. */
  waiting(source: string): number {
    return this.#buckets.get(source)?.waiting.length ?? 0;
  }

  /**
   * Admits one connection or request of `source`: 'now' at once (synchronously) unless the
   * source is held; else a promise that resolves 'waited' when its bucket lets it through, or
   * 'refused' when `signal` fires first or, for a request, `maxWaiting` requests already wait.
   */
  admit(source: string, kind: AdmissionKind, signal?: AbortSignal): 'now' | Promise<Admission> {
    this.#asked.set(source, (this.#asked.get(source) ?? 0) + 1);
    const b = this.#buckets.get(source);
    if (b === undefined) return 'now';
    this.#refill(b);
    if (b.waiting.length === 0 && b.tokens >= 1) {
      b.tokens -= 1;
      return 'now';
    }
    if ((kind === 'request' && b.requests >= this.limits.maxWaiting) || signal?.aborted === true) {
      this.#deps.observer?.admitted?.(source, kind, 'refused');
      return Promise.resolve('refused');
    }
    if (kind === 'request') b.requests += 1;
    return new Promise<Admission>((resolve) => {
      const entry = {
        go: (ok: boolean): void => {
          if (kind === 'request') b.requests -= 1;
          signal?.removeEventListener('abort', gone);
          const outcome = ok ? 'waited' : 'refused';
          this.#deps.observer?.admitted?.(source, kind, outcome);
          resolve(outcome);
        },
      };
      const gone = (): void => {
        const i = b.waiting.indexOf(entry);
        if (i >= 0) b.waiting.splice(i, 1);
        entry.go(false);
      };
      signal?.addEventListener('abort', gone, { once: true });
      b.waiting.push(entry);
      this.#schedule(b);
    });
  }

  /** One interval: reads the loop, decides, applies. The timer calls it; tests may too. */
  tick(): void {
    const now = this.#deps.now();
    const utilization = this.#deps.utilization();
    this.#lastUtilization = utilization;
    for (const s of this.#asked.keys()) this.#lastSeen.set(s, now);
    for (const [s, at] of this.#lastSeen) if (now - at > 1000) this.#lastSeen.delete(s);
    const rates = new Map([...this.#buckets].map(([s, b]) => [s, b.rate]));
    const waiting = new Map([...this.#buckets].map(([s, b]) => [s, b.waiting.length]));
    smooth(this.#rates, this.#asked, this.limits.intervalMs);
    const out = fairnessDecision({
      utilization, intervalMs: this.limits.intervalMs, asked: this.#asked, rates: this.#rates, held: rates, waiting, recentSources: this.#lastSeen.size,
    }, this.limits);
    this.#asked = new Map();
    for (const [source, b] of this.#buckets) {
      const rate = out.held.get(source);
      if (rate === undefined) {
        this.#buckets.delete(source);
        this.#count(-1);
        this.#release(b, true);
      } else {
        this.#refill(b);
        b.rate = rate;
      }
    }
    for (const [source, rate] of out.held) {
      if (this.#buckets.has(source)) continue;
      this.#buckets.set(source, { rate, tokens: 0, at: now, waiting: [], requests: 0, timer: undefined });
      this.#count(1);
    }
    if (out.cut !== undefined) this.#deps.observer?.held?.(out.cut, out.held.get(out.cut) ?? 0);
    for (const b of this.#buckets.values()) this.#schedule(b);
  }

  #count(delta: number): void {
    if (delta !== 0 && this.#deps.shared !== undefined) Atomics.add(this.#deps.shared, 2, delta);
  }

  #refill(b: Bucket): void {
    const now = this.#deps.now();
    // At most BURST_MS' worth saved up: a held source's admissions come evenly, never as a burst.
    const cap = Math.max(1, (b.rate * BURST_MS) / 1000);
    b.tokens = Math.min(cap, b.tokens + ((now - b.at) * b.rate) / 1000);
    b.at = now;
  }

  /** Lets waiting admissions through as tokens come, one timer per held source. */
  #schedule(b: Bucket): void {
    if (b.timer !== undefined) {
      clearTimeout(b.timer);
      b.timer = undefined;
    }
    this.#refill(b);
    while (b.waiting.length > 0 && b.tokens >= 1) {
      b.tokens -= 1;
      b.waiting.shift()?.go(true);
    }
    if (b.waiting.length === 0) return;
    const ms = Math.max(1, ((1 - b.tokens) * 1000) / b.rate);
    b.timer = setTimeout(() => {
      b.timer = undefined;
      this.#schedule(b);
    }, ms);
    b.timer.unref();
  }

  #release(b: Bucket, ok: boolean): void {
    if (b.timer !== undefined) clearTimeout(b.timer);
    b.timer = undefined;
    for (const w of b.waiting.splice(0)) w.go(ok);
  }
}
