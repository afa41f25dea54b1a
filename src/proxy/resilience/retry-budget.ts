// Linkerd's retry budget, so that retries cannot multiply an outage: over a sliding window
// (ttl, 10 s), retries may number at most `retryRatio` (20%) of the requests plus
// `minRetriesPerSecond` (10) x the window in seconds. Requests and retries are counted in ten
// sub-windows that age out as the clock moves. One budget per destination service.

import type { Clock } from '../../core/clock.ts';
import { ProxyErrors, proxyError } from '../errors.ts';

export interface RetryBudgetShape {
  readonly retryRatio: number;
  readonly minRetriesPerSecond: number;
  readonly ttlMs: number;
}

/** Linkerd's default budget. */
export const DEFAULT_RETRY_BUDGET: RetryBudgetShape = Object.freeze({ retryRatio: 0.2, minRetriesPerSecond: 10, ttlMs: 10_000 });

const BUCKETS = 10;

export function checkRetryBudget(s: RetryBudgetShape): RetryBudgetShape {
  if (!(s.retryRatio >= 0 && s.retryRatio <= 1000)) throw proxyError(ProxyErrors.BAD_OPTION, `retry budget retryRatio must be 0-1000, got ${s.retryRatio}`);
  if (!(s.minRetriesPerSecond >= 0) || !Number.isFinite(s.minRetriesPerSecond)) throw proxyError(ProxyErrors.BAD_OPTION, `retry budget minRetriesPerSecond must be >= 0, got ${s.minRetriesPerSecond}`);
  if (!Number.isInteger(s.ttlMs) || s.ttlMs < BUCKETS || s.ttlMs > 60_000) throw proxyError(ProxyErrors.BAD_OPTION, `retry budget ttlMs must be an integer ${BUCKETS}-60000, got ${s.ttlMs}`);
  return Object.freeze({ ...s });
}

/** Retries the window still allows: reserve plus ratio x requests, less the retries made. Pure. */
export function retriesLeft(shape: RetryBudgetShape, requests: number, retries: number): number {
  return shape.minRetriesPerSecond * (shape.ttlMs / 1000) + shape.retryRatio * requests - retries;
}

/** One destination's budget: `request()` for every first attempt, `tryRetry()` before every retry. */
export class RetryBudget {
  readonly shape: RetryBudgetShape;
  readonly #clock: Clock;
  readonly #bucketMs: number;
  readonly #requests = new Float64Array(BUCKETS);
  readonly #retries = new Float64Array(BUCKETS);
  #epoch: number;

  constructor(clock: Clock, shape: RetryBudgetShape = DEFAULT_RETRY_BUDGET) {
    this.shape = checkRetryBudget(shape);
    this.#clock = clock;
    this.#bucketMs = this.shape.ttlMs / BUCKETS;
    this.#epoch = Math.floor(clock.monotonic() / this.#bucketMs);
  }

  /** Counts a first attempt (it earns the budget its share). */
  request(): void {
    this.#requests[this.#advance()] += 1;
  }

  /** Spends one retry if the window allows it; false means do not retry. */
  tryRetry(): boolean {
    const i = this.#advance();
    if (this.left() < 1) return false;
    this.#retries[i] += 1;
    return true;
  }

  /** Retries the window allows now. */
  left(): number {
    this.#advance();
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < BUCKETS; i++) {
      requests += this.#requests[i];
      retries += this.#retries[i];
    }
    return retriesLeft(this.shape, requests, retries);
  }

  /** Ages out the sub-windows the clock has passed; returns the current one's index. */
  #advance(): number {
    const epoch = Math.floor(this.#clock.monotonic() / this.#bucketMs);
    const passed = Math.min(BUCKETS, epoch - this.#epoch);
    for (let k = 1; k <= passed; k++) {
      const i = (this.#epoch + k) % BUCKETS;
      this.#requests[i] = 0;
      this.#retries[i] = 0;
    }
    if (epoch > this.#epoch) this.#epoch = epoch;
    return this.#epoch % BUCKETS;
  }
}

function sameShape(a: RetryBudgetShape, b: RetryBudgetShape): boolean {
  return a.retryRatio === b.retryRatio && a.minRetriesPerSecond === b.minRetriesPerSecond && a.ttlMs === b.ttlMs;
}

/** Budgets per destination service, made on first use; bounded (the oldest made goes first). */
export class RetryBudgets {
  readonly #clock: Clock;
  readonly #shape: RetryBudgetShape;
  readonly #max: number;
  readonly #budgets = new Map<string, RetryBudget>();

  constructor(clock: Clock, shape: RetryBudgetShape = DEFAULT_RETRY_BUDGET, max = 10_000) {
    this.#clock = clock;
    this.#shape = checkRetryBudget(shape);
    this.#max = max;
  }

  /** The budget of `service`; a new one (counts from zero) when its policy's shape changed. */
  for(service: string, shape: RetryBudgetShape = this.#shape): RetryBudget {
    let b = this.#budgets.get(service);
    if (b !== undefined && !sameShape(b.shape, shape)) {
      this.#budgets.delete(service);
      b = undefined;
    }
    if (b === undefined) {
      if (this.#budgets.size >= this.#max) this.#budgets.delete(this.#budgets.keys().next().value as string);
      b = new RetryBudget(this.#clock, shape);
      this.#budgets.set(service, b);
    }
    return b;
  }
}
