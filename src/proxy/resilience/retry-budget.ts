// Linkerd's retry budget, so that retries cannot multiply an outage: retries may number at
// most `retryRatio` (20%) of the requests over a sliding window (ttl, 10 s), plus a reserve of
// `minRetriesPerSecond` (10) a second. Requests and the retries they fund are counted in ten
// sub-windows that age out as the clock moves, per worker thread (each worker's retries stay
// within the ratio of its own requests, so the agent's do too). The reserve is one token bucket
// per destination Service in the agent's shared table, so that every worker draws on the same
// 10/s: it holds up to minRetriesPerSecond x ttl (what Linkerd's window holds after a quiet
// ttl) and refills at minRetriesPerSecond. A retry spends from the ratio first, then the reserve.

import type { Clock } from '../../core/clock.ts';
import { ProxyErrors, proxyError } from '../errors.ts';
import { BucketTable, bucketMemory, shapeForRate, type BucketShape } from './token-bucket.ts';

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

/** The reserve's bucket: minRetriesPerSecond x ttl at most, refilled at minRetriesPerSecond; none for a reserve of 0. */
export function reserveShape(shape: RetryBudgetShape): BucketShape | undefined {
  if (shape.minRetriesPerSecond <= 0) return undefined;
  return shapeForRate(shape.minRetriesPerSecond, Math.max(1, Math.round((shape.minRetriesPerSecond * shape.ttlMs) / 1000)));
}

/** Where a budget's reserve lives: a key in a (shared) bucket table. */
export interface ReserveSlot {
  readonly table: BucketTable;
  readonly key: string;
}

/** One destination's budget: `request()` for every first attempt, `tryRetry()` before every retry. */
export class RetryBudget {
  readonly shape: RetryBudgetShape;
  readonly #clock: Clock;
  readonly #bucketMs: number;
  readonly #requests = new Float64Array(BUCKETS);
  /** Retries the ratio paid for (those the reserve paid for are in its bucket). */
  readonly #retries = new Float64Array(BUCKETS);
  readonly #reserve: ReserveSlot;
  readonly #reserveShape: BucketShape | undefined;
  #epoch: number;

  /** `reserve`: the slot of the agent's shared table; by default a table of this budget's own. */
  constructor(clock: Clock, shape: RetryBudgetShape = DEFAULT_RETRY_BUDGET, reserve?: ReserveSlot) {
    this.shape = checkRetryBudget(shape);
    this.#clock = clock;
    this.#bucketMs = this.shape.ttlMs / BUCKETS;
    this.#epoch = Math.floor(clock.monotonic() / this.#bucketMs);
    this.#reserve = reserve ?? { table: new BucketTable(clock, bucketMemory(1)), key: 'reserve' };
    this.#reserveShape = reserveShape(this.shape);
  }

  /** Counts a first attempt (it earns the budget its share). */
  request(): void {
    this.#requests[this.#advance()] += 1;
  }

  /** Spends one retry if the ratio or the reserve allows it; false means do not retry. */
  tryRetry(): boolean {
    const i = this.#advance();
    if (this.#ratioLeft() >= 1) {
      this.#retries[i] += 1;
      return true;
    }
    return this.#reserveShape !== undefined && this.#reserve.table.take(this.#reserve.key, this.#reserveShape).allowed;
  }

  /** Retries allowed now: what the ratio leaves in the window, plus the reserve's tokens. */
  left(): number {
    this.#advance();
    const reserve = this.#reserveShape === undefined ? 0 : this.#reserve.table.tokens(this.#reserve.key, this.#reserveShape);
    return Math.max(0, this.#ratioLeft()) + reserve;
  }

  #ratioLeft(): number {
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < BUCKETS; i++) {
      requests += this.#requests[i];
      retries += this.#retries[i];
    }
    return this.shape.retryRatio * requests - retries;
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

/**
 * Budgets per destination service, made on first use; bounded (the oldest made goes first).
 * Their reserves are keyed by service in `reserves`, the agent's shared table (every worker
 * hands in the same memory), so a forgotten budget made again finds its reserve as it was.
 */
export class RetryBudgets {
  readonly #clock: Clock;
  readonly #shape: RetryBudgetShape;
  readonly #max: number;
  readonly #reserves: BucketTable;
  readonly #budgets = new Map<string, RetryBudget>();

  constructor(clock: Clock, shape: RetryBudgetShape = DEFAULT_RETRY_BUDGET, max = 10_000, reserves?: BucketTable) {
    this.#clock = clock;
    this.#shape = checkRetryBudget(shape);
    this.#max = max;
    this.#reserves = reserves ?? new BucketTable(clock, bucketMemory(64));
  }

  /** The budget of `service`; a new one (the ratio counts from zero) when its policy's shape changed. */
  for(service: string, shape: RetryBudgetShape = this.#shape): RetryBudget {
    let b = this.#budgets.get(service);
    if (b !== undefined && !sameShape(b.shape, shape)) {
      this.#budgets.delete(service);
      b = undefined;
    }
    if (b === undefined) {
      if (this.#budgets.size >= this.#max) this.#budgets.delete(this.#budgets.keys().next().value as string);
      b = new RetryBudget(this.#clock, shape, { table: this.#reserves, key: `retry-reserve|${service}` });
      this.#budgets.set(service, b);
    }
    return b;
  }
}
