// Outlier detection on connect failures: after N consecutive failures an endpoint is ejected
// for base x (number of ejections in a row), capped; a success re-admits it and resets the
// multiplier. State is kept only for endpoints with recent failures, and bounded.

import type { Clock } from '../core/clock.ts';
import { ProxyErrors, proxyError } from './errors.ts';

export interface OutlierOptions {
  /** Consecutive connect failures that eject an endpoint. Default 5. */
  readonly consecutiveFailures?: number;
  /** First ejection length. Default 30 s. */
  readonly baseEjectionMs?: number;
  /** Longest ejection. Default 300 s. */
  readonly maxEjectionMs?: number;
  /** Endpoints tracked at most (oldest forgotten first). Default 10 000. */
  readonly maxTracked?: number;
}

interface EndpointRecord {
  failures: number;
  ejections: number;
  until: number;
}

export class OutlierDetector {
  readonly #clock: Clock;
  readonly #threshold: number;
  readonly #base: number;
  readonly #max: number;
  readonly #maxTracked: number;
  readonly #records = new Map<string, EndpointRecord>();

  constructor(clock: Clock, options: OutlierOptions = {}) {
    this.#clock = clock;
    this.#threshold = positiveInt('consecutiveFailures', options.consecutiveFailures ?? 5);
    this.#base = positiveInt('baseEjectionMs', options.baseEjectionMs ?? 30_000);
    this.#max = positiveInt('maxEjectionMs', options.maxEjectionMs ?? 300_000);
    this.#maxTracked = positiveInt('maxTracked', options.maxTracked ?? 10_000);
  }

  /** A connect to `key` succeeded. */
  success(key: string): void {
    // A success while still ejected (panic routing) ends the ejection too.
    this.#records.delete(key);
  }

  /** A connect to `key` failed; true when this failure ejected it. */
  failure(key: string): boolean {
    const now = this.#clock.monotonic();
    let r = this.#records.get(key);
    if (r === undefined) {
      if (this.#records.size >= this.#maxTracked) {
        const oldest = this.#records.keys().next();
        if (oldest.done !== true) this.#records.delete(oldest.value);
      }
      r = { failures: 0, ejections: 0, until: 0 };
      this.#records.set(key, r);
    }
    if (r.until > now) return false;
    r.failures += 1;
    if (r.failures < this.#threshold) return false;
    r.failures = 0;
    r.ejections += 1;
    r.until = now + Math.min(this.#base * r.ejections, this.#max);
    return true;
  }

  ejected(key: string): boolean {
    const r = this.#records.get(key);
    return r !== undefined && r.until > this.#clock.monotonic();
  }

  /** Milliseconds of ejection left (0 when not ejected). */
  ejectionLeft(key: string): number {
    const r = this.#records.get(key);
    return r === undefined ? 0 : Math.max(0, r.until - this.#clock.monotonic());
  }

  get tracked(): number {
    return this.#records.size;
  }
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw proxyError(ProxyErrors.BAD_OPTION, `outlier option ${name} must be a positive integer, got ${v}`);
  return v;
}
