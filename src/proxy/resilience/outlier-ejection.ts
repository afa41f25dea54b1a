// Outlier detection on responses, as Istio's DestinationRule outlierDetection (Envoy's
// consecutive-5xx detector): an endpoint answering `consecutive5xxErrors` 5xx (or failing to
// connect) in a row is ejected from the service's pool for baseEjectionTime x the number of
// times it has been ejected; at each `interval` an endpoint that stayed healthy has that
// multiplier lowered by one (time spent ejected does not count). No more than
// maxEjectionPercent of the pool is ejected at once, but at least one endpoint may be (Envoy's
// rule, so a pool of two can still shed one).
//
// The endpoints' records live in shared memory (outlierMemory), one table for every proxy
// worker thread of an agent, as Envoy keeps one detector per cluster for all its workers: the
// 5xx in a row are counted over every worker's requests and an ejection holds for all of them.
// A record is a slot (keyed by service and endpoint, hashed, probed) under its own spin lock;
// one with nothing to remember (back in the pool, multiplier 0, no failures) may be taken over
// by another key, so the table's size bounds the memory whatever the number of endpoints. An
// endpoint that finds no slot is not tracked (never counted on another's record, which could
// eject a healthy one).
// Times are the wall clock's (the same in every thread; monotonic clocks are per thread).

import type { Clock } from '../../core/clock.ts';
import { ProxyErrors, proxyError } from '../errors.ts';
import { keyTag, spinLock, spinUnlock } from './token-bucket.ts';

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

/** Slots of an agent's table (128 KiB): how many endpoints with recent failures or ejections can be tracked. */
export const DEFAULT_OUTLIER_SLOTS = 4096;
// Per slot: Int32 [lock, tag, consecutive, multiplier], Float64 [until, decayFrom].
const I32 = 4;
const F64 = 2;
const SLOT_BYTES = I32 * 4 + F64 * 8;
/** Slots looked at for a key before it is given up on. */
const PROBES = 8;

/** The shared memory of an OutlierTable: made once per agent, handed to every worker. */
export function outlierMemory(slots: number): SharedArrayBuffer {
  if (!Number.isInteger(slots) || slots < 1 || slots > 1 << 20) throw proxyError(ProxyErrors.BAD_OPTION, `outlier table slots must be 1-${1 << 20}, got ${slots}`);
  return new SharedArrayBuffer(slots * SLOT_BYTES);
}

/** One endpoint's record, as read under its slot's lock. */
interface EndpointRecord {
  consecutive: number;
  /** Ejections counted toward the next ejection's length. */
  multiplier: number;
  /** Wall ms when the current ejection ends; 0 when not ejected. */
  until: number;
  /** Wall ms from which healthy intervals count toward lowering the multiplier. */
  decayFrom: number;
}

/** Endpoint records over shared memory (see the file's head). */
export class OutlierTable {
  readonly #slots: number;
  readonly #i32: Int32Array;
  readonly #f64: Float64Array;

  constructor(memory: SharedArrayBuffer) {
    this.#slots = memory.byteLength / SLOT_BYTES;
    if (!Number.isInteger(this.#slots) || this.#slots < 1) throw proxyError(ProxyErrors.BAD_OPTION, 'outlier table memory does not come from outlierMemory()');
    this.#f64 = new Float64Array(memory, 0, this.#slots * F64);
    this.#i32 = new Int32Array(memory, this.#slots * F64 * 8, this.#slots * I32);
  }

  /** The key's slot if it has one, without claiming any. */
  find(key: string): number | undefined {
    const tag = keyTag(key);
    const start = (tag >>> 0) % this.#slots;
    for (let i = 0; i < Math.min(PROBES, this.#slots); i++) {
      const slot = (start + i) % this.#slots;
      if (Atomics.load(this.#i32, slot * I32 + 1) === tag) return slot;
    }
    return undefined;
  }

  /** The key's slot: its own, a free one, or one with nothing to remember (taken over); undefined when the probed ones are all in use. */
  claim(key: string, policy: OutlierPolicy, now: number): number | undefined {
    const tag = keyTag(key);
    const start = (tag >>> 0) % this.#slots;
    for (let i = 0; i < Math.min(PROBES, this.#slots); i++) {
      const slot = (start + i) % this.#slots;
      if (Atomics.load(this.#i32, slot * I32 + 1) === tag) return slot;
      const claimed = this.update(slot, (r, current) => {
        if (current === tag) return true;
        if (current !== 0) {
          decay(r, now, policy);
          if (r.until > now || r.multiplier > 0 || r.consecutive > 0) return false;
        }
        r.consecutive = 0;
        r.multiplier = 0;
        r.until = 0;
        r.decayFrom = now;
        Atomics.store(this.#i32, slot * I32 + 1, tag);
        return true;
      });
      if (claimed) return slot;
    }
    return undefined;
  }

  /** Runs `f` on the slot's record under its lock and writes the record back. */
  update<T>(slot: number, f: (r: EndpointRecord, tag: number) => T): T {
    spinLock(this.#i32, slot * I32);
    try {
      const r: EndpointRecord = {
        consecutive: this.#i32[slot * I32 + 2] ?? 0, multiplier: this.#i32[slot * I32 + 3] ?? 0,
        until: this.#f64[slot * F64] ?? 0, decayFrom: this.#f64[slot * F64 + 1] ?? 0,
      };
      const out = f(r, this.#i32[slot * I32 + 1] ?? 0);
      this.#i32[slot * I32 + 2] = r.consecutive;
      this.#i32[slot * I32 + 3] = r.multiplier;
      this.#f64[slot * F64] = r.until;
      this.#f64[slot * F64 + 1] = r.decayFrom;
      return out;
    } finally {
      spinUnlock(this.#i32, slot * I32);
    }
  }

  /** Slots holding a key. */
  get used(): number {
    let n = 0;
    for (let slot = 0; slot < this.#slots; slot++) if (Atomics.load(this.#i32, slot * I32 + 1) !== 0) n++;
    return n;
  }
}

/** Each whole interval spent back in the pool lowers the multiplier by one (time ejected does not count). */
function decay(r: EndpointRecord, now: number, policy: OutlierPolicy): void {
  const from = Math.max(r.until, r.decayFrom);
  const steps = Math.floor((now - from) / policy.intervalMs);
  if (steps <= 0) return;
  r.multiplier = Math.max(0, r.multiplier - steps);
  r.decayFrom = from + steps * policy.intervalMs;
}

export type OutlierEvent = 'none' | 'ejected' | 'ejection-refused';

/** One Service's detector in one worker: its records are in the shared table, keyed `service|endpoint`. */
export class OutlierEjection {
  readonly policy: OutlierPolicy;
  readonly #clock: Clock;
  readonly #table: OutlierTable;
  readonly #prefix: string;
  /** Ejections this worker made, for tests. */
  ejections = 0;
  /** Ejections this worker did not make because maxEjectionPercent was reached, for tests. */
  refused = 0;

  /** `table`: the agent's shared one; by default a small table of this detector's own. */
  constructor(clock: Clock, policy: OutlierPolicy = DEFAULT_OUTLIER_POLICY, table?: OutlierTable, service = '') {
    for (const [k, v] of Object.entries(policy)) {
      if (!Number.isInteger(v) || v < (k === 'maxEjectionPercent' ? 0 : 1) || (k === 'maxEjectionPercent' && v > 100)) {
        throw proxyError(ProxyErrors.BAD_OPTION, `outlier detection ${k} must be a ${k === 'maxEjectionPercent' ? 'percentage 0-100' : 'positive integer'}, got ${v}`);
      }
    }
    this.policy = Object.freeze({ ...policy });
    this.#clock = clock;
    this.#table = table ?? new OutlierTable(outlierMemory(256));
    this.#prefix = `${service}|`;
  }

  /** Whether the endpoint is out of the pool now. */
  ejected(endpoint: string): boolean {
    const slot = this.#table.find(this.#prefix + endpoint);
    if (slot === undefined) return false;
    const now = this.#clock.now();
    return this.#table.update(slot, (r) => r.until > now);
  }

  /** Endpoints ejected now, of those named. */
  ejectedCount(endpoints: readonly string[]): number {
    let n = 0;
    for (const e of endpoints) if (this.ejected(e)) n++;
    return n;
  }

  success(endpoint: string): void {
    const slot = this.#table.find(this.#prefix + endpoint);
    if (slot !== undefined) this.#table.update(slot, (r) => { r.consecutive = 0; });
  }

  /**
   * A 5xx or connect failure from `endpoint`, one of the service's endpoints `pool` (keys).
   * Returns what it led to.
   */
  failure(endpoint: string, pool: readonly string[]): OutlierEvent {
    const now = this.#clock.now();
    const slot = this.#table.claim(this.#prefix + endpoint, this.policy, now);
    if (slot === undefined) return 'none';
    const reached = this.#table.update(slot, (r) => {
      if (r.until > now) return false;
      decay(r, now, this.policy);
      r.consecutive += 1;
      if (r.consecutive < this.policy.consecutive5xxErrors) return false;
      r.consecutive = 0;
      return true;
    });
    if (!reached) return 'none';
    // Counted outside the slot's lock (one lock at a time, so no two threads wait on each
    // other): two workers ejecting in the same instant may pass the percentage by one.
    if (!ejectionAllowed(this.ejectedCount(pool), pool.length, this.policy.maxEjectionPercent)) {
      this.refused++;
      return 'ejection-refused';
    }
    this.#table.update(slot, (r) => {
      r.multiplier = Math.min(MAX_MULTIPLIER, r.multiplier + 1);
      r.until = now + this.policy.baseEjectionMs * r.multiplier;
    });
    this.ejections++;
    return 'ejected';
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
 * outlierDetection: made on first use, replaced when the policy changes (the endpoints'
 * records stay in the table), dropped when the policy goes. Every worker's detectors share
 * `table`, so an endpoint that always fails reaches clients consecutive5xxErrors times in all
 * before every worker sees it ejected.
 */
export class OutlierEjections {
  readonly #clock: Clock;
  readonly #table: OutlierTable;
  readonly #byService = new Map<string, OutlierEjection>();

  constructor(clock: Clock, table: OutlierTable = new OutlierTable(outlierMemory(DEFAULT_OUTLIER_SLOTS))) {
    this.#clock = clock;
    this.#table = table;
  }

  /** The detector of `serviceKey` under `policy`; undefined when there is none (no policy, or consecutive5xxErrors 0: Istio's off). */
  for(serviceKey: string, policy: OutlierPolicy | undefined): OutlierEjection | undefined {
    if (policy === undefined || policy.consecutive5xxErrors === 0) {
      this.#byService.delete(serviceKey);
      return undefined;
    }
    const o = this.#byService.get(serviceKey);
    if (o !== undefined && samePolicy(o.policy, policy)) return o;
    const next = new OutlierEjection(this.#clock, policy, this.#table, serviceKey);
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
