// Outlier detection on responses, as Istio's DestinationRule outlierDetection (Envoy's
// consecutive-5xx detector): an endpoint answering `consecutive5xxErrors` 5xx (or failing to
// connect) in a row is ejected from the service's pool for baseEjectionTime x the number of
// times it has been ejected; at each `interval` an endpoint that stayed healthy has that
// multiplier lowered by one (time spent ejected does not count). No more than maxEjectionPercent of the pool is ejected at once,
// but at least one endpoint may be (Envoy's rule, so a pool of two can still shed one).
// One instance per destination service; the clock is injected.

import type { Clock } from '../../core/clock.ts';
import { ProxyErrors, proxyError } from '../errors.ts';

export interface OutlierPolicy {
  readonly consecutive5xxErrors: number;
  readonly intervalMs: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionPercent: number;
}

/** Istio's defaults. */
export const DEFAULT_OUTLIER_POLICY: OutlierPolicy = Object.freeze({ consecutive5xxErrors: 5, intervalMs: 10_000, baseEjectionMs: 30_000, maxEjectionPercent: 10 });

/** An ejection grows with the multiplier but never past this many base times (Envoy's max_ejection_time default is 300 s over 30 s). */
const MAX_MULTIPLIER = 10;

interface EndpointRecord {
  consecutive: number;
  /** Ejections counted toward the next ejection's length. */
  multiplier: number;
  /** Monotonic ms when the current ejection ends; 0 when not ejected. */
  until: number;
  /** Monotonic ms from which healthy intervals count toward lowering the multiplier. */
  decayFrom: number;
}

export type OutlierEvent = 'none' | 'ejected' | 'ejection-refused';

export class OutlierEjection {
  readonly policy: OutlierPolicy;
  readonly #clock: Clock;
  readonly #records = new Map<string, EndpointRecord>();
  #lastSweep: number;
  /** Ejections made so far, for metrics. */
  ejections = 0;
  /** Ejections not made because maxEjectionPercent was reached, for metrics. */
  refused = 0;

  constructor(clock: Clock, policy: OutlierPolicy = DEFAULT_OUTLIER_POLICY) {
    for (const [k, v] of Object.entries(policy)) {
      if (!Number.isInteger(v) || v < (k === 'maxEjectionPercent' ? 0 : 1) || (k === 'maxEjectionPercent' && v > 100)) {
        throw proxyError(ProxyErrors.BAD_OPTION, `outlier detection ${k} must be a ${k === 'maxEjectionPercent' ? 'percentage 0-100' : 'positive integer'}, got ${v}`);
      }
    }
    this.policy = Object.freeze({ ...policy });
    this.#clock = clock;
    this.#lastSweep = clock.monotonic();
  }

  /** Whether the endpoint is out of the pool now. */
  ejected(endpoint: string): boolean {
    this.#sweep();
    const r = this.#records.get(endpoint);
    return r !== undefined && r.until > this.#clock.monotonic();
  }

  /** Endpoints ejected now, of those named. */
  ejectedCount(endpoints: readonly string[]): number {
    let n = 0;
    for (const e of endpoints) if (this.ejected(e)) n++;
    return n;
  }

  success(endpoint: string): void {
    const r = this.#records.get(endpoint);
    if (r !== undefined) r.consecutive = 0;
  }

  /**
   * A 5xx or connect failure from `endpoint`, one of `poolSize` endpoints of the service.
   * Returns what it led to.
   */
  failure(endpoint: string, poolSize: number): OutlierEvent {
    this.#sweep();
    const now = this.#clock.monotonic();
    let r = this.#records.get(endpoint);
    if (r === undefined) {
      r = { consecutive: 0, multiplier: 0, until: 0, decayFrom: now };
      this.#records.set(endpoint, r);
    }
    if (r.until > now) return 'none';
    this.#decay(r, now);
    r.consecutive += 1;
    if (r.consecutive < this.policy.consecutive5xxErrors) return 'none';
    r.consecutive = 0;
    if (!ejectionAllowed(this.#ejectedNow(now), poolSize, this.policy.maxEjectionPercent)) {
      this.refused++;
      return 'ejection-refused';
    }
    r.multiplier = Math.min(MAX_MULTIPLIER, r.multiplier + 1);
    r.until = now + this.policy.baseEjectionMs * r.multiplier;
    this.ejections++;
    return 'ejected';
  }

  #ejectedNow(now: number): number {
    let n = 0;
    for (const r of this.#records.values()) if (r.until > now) n++;
    return n;
  }

  /** Each whole interval spent back in the pool lowers the multiplier by one (time ejected does not count). */
  #decay(r: EndpointRecord, now: number): void {
    const from = Math.max(r.until, r.decayFrom);
    const steps = Math.floor((now - from) / this.policy.intervalMs);
    if (steps <= 0) return;
    r.multiplier = Math.max(0, r.multiplier - steps);
    r.decayFrom = from + steps * this.policy.intervalMs;
  }

  /** Once per interval: records with nothing left to remember (back, multiplier 0, no failures) are forgotten, so state stays bounded. */
  #sweep(): void {
    const now = this.#clock.monotonic();
    if (now - this.#lastSweep < this.policy.intervalMs) return;
    this.#lastSweep = now;
    for (const [key, r] of this.#records) {
      if (r.until > now) continue;
      this.#decay(r, now);
      if (r.multiplier === 0 && r.consecutive === 0) this.#records.delete(key);
    }
  }

  /** Endpoints with state kept (recent failures or ejections). */
  get tracked(): number {
    return this.#records.size;
  }
}

/** Envoy: eject while (ejected + 1) / pool stays within the percentage, and always allow one. */
export function ejectionAllowed(ejectedNow: number, poolSize: number, maxEjectionPercent: number): boolean {
  if (poolSize <= 0 || maxEjectionPercent === 0) return false;
  if (ejectedNow === 0) return true;
  return ((ejectedNow + 1) * 100) / poolSize <= maxEjectionPercent;
}

/**
 * The outlier detectors of one worker, one per Service whose DestinationPolicy sets
 * outlierDetection: made on first use, replaced (state and all) when the policy changes,
 * dropped when the policy goes. Per worker, like the request balancer: each worker counts the
 * 5xx of the requests it carries, so with W workers an endpoint that always fails reaches
 * the client at most W x consecutive5xxErrors times before every worker has ejected it.
 */
export class OutlierEjections {
  readonly #clock: Clock;
  readonly #byService = new Map<string, OutlierEjection>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** The detector of `serviceKey` under `policy`; undefined when there is none (no policy, or consecutive5xxErrors 0: Istio's off). */
  for(serviceKey: string, policy: OutlierPolicy | undefined): OutlierEjection | undefined {
    if (policy === undefined || policy.consecutive5xxErrors === 0) {
      this.#byService.delete(serviceKey);
      return undefined;
    }
    const o = this.#byService.get(serviceKey);
    if (o !== undefined && samePolicy(o.policy, policy)) return o;
    const next = new OutlierEjection(this.#clock, policy);
    this.#byService.set(serviceKey, next);
    return next;
  }

  /** Forgets the detectors of Services `keep` says no to (after a config change). */
  retain(keep: (serviceKey: string) => boolean): void {
    for (const key of this.#byService.keys()) if (!keep(key)) this.#byService.delete(key);
  }

  get size(): number {
    return this.#byService.size;
  }
}

function samePolicy(a: OutlierPolicy, b: OutlierPolicy): boolean {
  return a.consecutive5xxErrors === b.consecutive5xxErrors && a.intervalMs === b.intervalMs
    && a.baseEjectionMs === b.baseEjectionMs && a.maxEjectionPercent === b.maxEjectionPercent;
}
