// Token buckets with Envoy's local-rate-limit semantics (max_tokens, tokens_per_fill,
// fill_interval: a bucket starts full and gains tokens_per_fill at each whole fill interval,
// never above max_tokens), kept in shared memory so that every proxy worker thread of an agent
// draws on one budget: the table's SharedArrayBuffer is handed to each worker, and each slot
// is guarded by its own spin lock (the critical section is a few arithmetic operations).
// Keys (a policy and a source identity, say) are hashed onto a fixed number of slots, so memory
// is bounded whatever the number of keys; a slot whose bucket has refilled to the brim holds
// no state worth keeping (a full bucket equals a new one), so another key may take it over.
// Each call names the key's shape (policies differ; a changed policy keeps its tokens, capped).

import type { Clock } from '../../core/clock.ts';
import { ProxyErrors, proxyError } from '../errors.ts';

export interface BucketShape {
  /** The most tokens the bucket holds, and what it starts with (the burst). */
  readonly maxTokens: number;
  /** Tokens added at each fill. */
  readonly tokensPerFill: number;
  /** Milliseconds between fills (Envoy requires at least 50). */
  readonly fillIntervalMs: number;
}

/** The state of one bucket: its tokens and the fill tick they were last brought up to. */
export interface BucketState {
  readonly tokens: number;
  readonly tick: number;
}

export function checkShape(shape: BucketShape): BucketShape {
  const bad = (field: string, v: number, what: string): never => {
    throw proxyError(ProxyErrors.BAD_OPTION, `token bucket ${field} must be ${what}, got ${v}`);
  };
  if (!Number.isInteger(shape.maxTokens) || shape.maxTokens < 1) bad('maxTokens', shape.maxTokens, 'an integer >= 1');
  if (!(shape.tokensPerFill > 0) || !Number.isFinite(shape.tokensPerFill)) bad('tokensPerFill', shape.tokensPerFill, 'a number > 0');
  if (!Number.isInteger(shape.fillIntervalMs) || shape.fillIntervalMs < 50) bad('fillIntervalMs', shape.fillIntervalMs, 'an integer >= 50');
  return Object.freeze({ ...shape });
}

/**
 * A bucket shape for a rate in requests per second and a burst: fills every 100 ms (every
 * 1000/rate ms below 10/s, so each fill is at least one token), starting with `burst`
 * tokens (default: one second's worth).
 */
export function shapeForRate(requestsPerSecond: number, burst?: number): BucketShape {
  const fillIntervalMs = requestsPerSecond >= 10 ? 100 : Math.max(50, Math.round(1000 / requestsPerSecond));
  return checkShape({
    maxTokens: burst ?? Math.max(1, Math.ceil(requestsPerSecond)),
    tokensPerFill: (requestsPerSecond * fillIntervalMs) / 1000,
    fillIntervalMs,
  });
}

/** The fill tick a time falls in. */
export function fillTick(shape: BucketShape, nowMs: number): number {
  return Math.floor(nowMs / shape.fillIntervalMs);
}

/** The bucket brought up to `nowMs`: one fill per whole interval since its tick, capped. A clock going back adds nothing. */
export function refill(shape: BucketShape, state: BucketState, nowMs: number): BucketState {
  const tick = fillTick(shape, nowMs);
  if (tick <= state.tick) return state;
  return { tokens: Math.min(shape.maxTokens, state.tokens + (tick - state.tick) * shape.tokensPerFill), tick };
}

export interface TakeResult {
  readonly allowed: boolean;
  /** Tokens left after this decision. */
  readonly remaining: number;
  /** When refused: milliseconds until enough tokens are there (for retry-after). */
  readonly retryAfterMs: number;
}

/** One decision on a bucket already refilled to `nowMs`: take `cost` tokens if there are that many. */
export function take(shape: BucketShape, state: BucketState, cost: number, nowMs: number): { state: BucketState; result: TakeResult } {
  if (state.tokens >= cost) {
    const tokens = state.tokens - cost;
    return { state: { tokens, tick: state.tick }, result: { allowed: true, remaining: tokens, retryAfterMs: 0 } };
  }
  const fills = Math.ceil((cost - state.tokens) / shape.tokensPerFill);
  const nextFillAt = (state.tick + 1) * shape.fillIntervalMs;
  return { state, result: { allowed: false, remaining: state.tokens, retryAfterMs: Math.max(1, nextFillAt - nowMs + (fills - 1) * shape.fillIntervalMs) } };
}

/** Slots of an agent's table (96 KiB): keys beyond it share slots, which is stricter, never looser. */
export const DEFAULT_BUCKET_SLOTS = 4096;

// Per slot: Int32 [lock, tag], Float64 [tokens, tick].
const I32_PER_SLOT = 2;
const F64_PER_SLOT = 2;
/** Slots looked at for a key before it shares the last one looked at. */
const PROBES = 8;

/** FNV-1a, never 0 (0 marks a free slot). */
export function keyTag(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h === 0 ? 1 : h | 0;
}

/** The shared memory of a BucketTable: create it once per agent, hand it to every worker. */
export function bucketMemory(slots: number): SharedArrayBuffer {
  if (!Number.isInteger(slots) || slots < 1 || slots > 1 << 20) throw proxyError(ProxyErrors.BAD_OPTION, `bucket table slots must be 1-${1 << 20}, got ${slots}`);
  return new SharedArrayBuffer(slots * (I32_PER_SLOT * 4 + F64_PER_SLOT * 8));
}

/** Buckets, keyed, over shared memory (see the file's head). */
export class BucketTable {
  readonly memory: SharedArrayBuffer;
  readonly #clock: Clock;
  readonly #slots: number;
  readonly #f64: Float64Array;
  readonly #i32: Int32Array;

  constructor(clock: Clock, memory: SharedArrayBuffer) {
    this.#clock = clock;
    this.memory = memory;
    this.#slots = memory.byteLength / (I32_PER_SLOT * 4 + F64_PER_SLOT * 8);
    if (!Number.isInteger(this.#slots) || this.#slots < 1) throw proxyError(ProxyErrors.BAD_OPTION, 'bucket table memory does not come from bucketMemory()');
    this.#f64 = new Float64Array(memory, 0, this.#slots * F64_PER_SLOT);
    this.#i32 = new Int32Array(memory, this.#slots * F64_PER_SLOT * 8, this.#slots * I32_PER_SLOT);
  }

  /** Takes `cost` tokens from the key's bucket (of `shape`, checked once by the caller), or says how long until they are there. */
  take(key: string, shape: BucketShape, cost = 1): TakeResult {
    const now = this.#clock.now();
    const slot = this.#slotFor(keyTag(key), shape, now);
    this.#lock(slot);
    try {
      const before = refill(shape, this.#read(slot), now);
      const out = take(shape, before, cost, now);
      this.#write(slot, out.state);
      return out.result;
    } finally {
      this.#unlock(slot);
    }
  }

  /** Tokens the key's bucket holds now (without taking any). */
  tokens(key: string, shape: BucketShape): number {
    const now = this.#clock.now();
    const slot = this.#slotFor(keyTag(key), shape, now);
    this.#lock(slot);
    try {
      return refill(shape, this.#read(slot), now).tokens;
    } finally {
      this.#unlock(slot);
    }
  }

  /** The key's slot: its own, a free one (claimed full), an idle one (full again, taken over), else the last probed (shared). */
  #slotFor(tag: number, shape: BucketShape, now: number): number {
    const start = (tag >>> 0) % this.#slots;
    let idle = -1;
    let last = start;
    for (let i = 0; i < Math.min(PROBES, this.#slots); i++) {
      const slot = (start + i) % this.#slots;
      last = slot;
      const seen = Atomics.load(this.#i32, slot * I32_PER_SLOT + 1);
      if (seen === tag) return slot;
      if (seen === 0 || idle === -1) {
        this.#lock(slot);
        try {
          const current = this.#i32[slot * I32_PER_SLOT + 1];
          if (current === tag) return slot;
          if (current === 0 || refill(shape, this.#read(slot), now).tokens >= shape.maxTokens) {
            if (current === 0) {
              this.#claim(slot, tag, shape, now);
              return slot;
            }
            idle = slot;
          }
        } finally {
          this.#unlock(slot);
        }
      }
    }
    if (idle !== -1) {
      this.#lock(idle);
      try {
        // Still idle (no one took from it meanwhile)? Then it is ours.
        if (refill(shape, this.#read(idle), now).tokens >= shape.maxTokens) this.#claim(idle, tag, shape, now);
      } finally {
        this.#unlock(idle);
      }
      return idle;
    }
    return last;
  }

  #claim(slot: number, tag: number, shape: BucketShape, now: number): void {
    this.#write(slot, { tokens: shape.maxTokens, tick: fillTick(shape, now) });
    Atomics.store(this.#i32, slot * I32_PER_SLOT + 1, tag);
  }

  #read(slot: number): BucketState {
    return { tokens: this.#f64[slot * F64_PER_SLOT], tick: this.#f64[slot * F64_PER_SLOT + 1] };
  }

  #write(slot: number, s: BucketState): void {
    this.#f64[slot * F64_PER_SLOT] = s.tokens;
    this.#f64[slot * F64_PER_SLOT + 1] = s.tick;
  }

  #lock(slot: number): void {
    spinLock(this.#i32, slot * I32_PER_SLOT);
  }

  #unlock(slot: number): void {
    spinUnlock(this.#i32, slot * I32_PER_SLOT);
  }
}

/**
 * Takes the spin lock in `cells[at]` (0 free, 1 held), for a critical section of a few
 * operations on shared memory; Atomics order the plain reads and writes inside it against
 * other threads' locks.
 */
export function spinLock(cells: Int32Array, at: number): void {
  while (Atomics.compareExchange(cells, at, 0, 1) !== 0) { /* spin: the holder is a few instructions from done */ }
}

export function spinUnlock(cells: Int32Array, at: number): void {
  Atomics.store(cells, at, 0);
}
