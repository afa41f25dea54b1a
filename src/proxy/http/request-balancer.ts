// Endpoint choice per request: P2C over peak-EWMA load among the endpoints failure accrual
// (or the Service's outlier detection, when its DestinationPolicy sets one) admits (all of
// them when none is admitted: trying beats refusing), and the bookkeeping
// each request feeds back (in flight, latency to the response head, success or failure).
//
// One per proxy worker thread, not shared between threads: each worker balances the
// requests of the connections it accepted, as independent Linkerd proxies each balance
// their own. Sharing would need every endpoint's state in a SharedArrayBuffer indexed the
// same way in every thread (and re-indexed on each config push) for a signal, in-flight
// counts, that P2C already reads well enough per thread; with the default two workers each
// still sees half the requests of a hot client.

import { endpointKey, type Pickable, type RandomSource } from '../load-balancer.ts';
import { HEALTHY, LINKERD_ACCRUAL, admits, current, dispatched, record, type AccrualOptions, type AccrualState } from './failure-accrual.ts';
import { LINKERD_EWMA, ewmaLoad, newEwma, observe, powerOfTwo, type Candidate, type EwmaOptions, type EwmaState } from './peak-ewma.ts';

export interface RequestBalancerOptions {
  /** Monotonic milliseconds. */
  readonly now: () => number;
  readonly random?: RandomSource;
  readonly ewma?: EwmaOptions;
  readonly accrual?: AccrualOptions;
  /** Endpoints remembered at most (the least recently used idle one is forgotten first). Default 10 000. */
  readonly maxTracked?: number;
}

interface EndpointState {
  readonly ewma: EwmaState;
  accrual: AccrualState;
}

/** One request to an endpoint: call `done` once with how it went. */
export interface InFlightRequest {
  readonly key: string;
  /** `ok`: a response other than 5xx; `rttMs`: time to the response head (omit when none came). */
  done(ok: boolean, rttMs?: number): void;
}

export class RequestBalancer {
  readonly #now: () => number;
  readonly #random: RandomSource;
  readonly #ewma: EwmaOptions;
  readonly #accrual: AccrualOptions;
  readonly #maxTracked: number;
  readonly #states = new Map<string, EndpointState>();

  constructor(o: RequestBalancerOptions) {
    this.#now = o.now;
    this.#random = o.random ?? Math.random;
    this.#ewma = o.ewma ?? LINKERD_EWMA;
    this.#accrual = o.accrual ?? LINKERD_ACCRUAL;
    this.#maxTracked = o.maxTracked ?? 10_000;
  }

  /**
   * Picks an endpoint for one request, or undefined when none can take it. `exclude`: keys
   * already tried. `ejected`: the Service's own outlier detection (its DestinationPolicy),
   * which then decides who is out in place of failure accrual.
   */
  pick<E extends Pickable>(endpoints: readonly E[], exclude?: ReadonlySet<string>, ejected?: (key: string) => boolean): E | undefined {
    if (endpoints.length === 1) {
      // One endpoint (a pod, a one-replica Service): no arrays, no clock read.
      const only = endpoints[0];
      return only !== undefined && only.weight > 0 && !(exclude?.has(endpointKey(only)) ?? false) ? only : undefined;
    }
    const now = this.#now();
    const usable = endpoints.filter((e) => e.weight > 0 && !(exclude?.has(endpointKey(e)) ?? false));
    if (usable.length <= 1) return usable[0];
    // Every endpoint seen is tracked from now: a new one starts at the default RTT and its
    // estimate decays from the moment it was first offered, as in Linkerd.
    const admitted = usable.filter((e) => (ejected === undefined ? admits(this.#state(endpointKey(e), false).accrual, now) : !ejected(endpointKey(e))));
    const pool = admitted.length > 0 ? admitted : usable;
    const candidates: Candidate<E>[] = pool.map((e) => ({ endpoint: e, weight: e.weight, load: ewmaLoad(this.#state(endpointKey(e), false).ewma, now, this.#ewma) }));
    return powerOfTwo(candidates, this.#random(), this.#random());
  }

  /** A request goes to `key` now. */
  start(key: string): InFlightRequest {
    const s = this.#state(key);
    const now = this.#now();
    s.ewma.pending += 1;
    s.accrual = dispatched(s.accrual, now);
    let finished = false;
    return {
      key,
      done: (ok, rttMs) => {
        if (finished) return;
        finished = true;
        const at = this.#now();
        s.ewma.pending -= 1;
        if (rttMs !== undefined) observe(s.ewma, rttMs, at, this.#ewma);
        // No response at all (connect failure, reset): as slow as it gets for a while.
        else if (!ok) observe(s.ewma, Math.max(s.ewma.cost, 10 * this.#ewma.defaultRttMs), at, this.#ewma);
        s.accrual = record(s.accrual, ok, at, this.#random(), this.#accrual);
      },
    };
  }

  /** For tests, metrics and the admin page. */
  inspect(key: string): { readonly load: number; readonly pending: number; readonly accrual: AccrualState } | undefined {
    const s = this.#states.get(key);
    if (s === undefined) return undefined;
    const now = this.#now();
    return { load: ewmaLoad(s.ewma, now, this.#ewma), pending: s.ewma.pending, accrual: current(s.accrual, now) };
  }

  get tracked(): number {
    return this.#states.size;
  }

  /** The endpoint's state, made on first sight; `touch` marks it most recently used. */
  #state(key: string, touch = true): EndpointState {
    let s = this.#states.get(key);
    if (s !== undefined) {
      if (!touch) return s;
      // Most recently used last, so the oldest idle entry is the first one found.
      this.#states.delete(key);
      this.#states.set(key, s);
      return s;
    }
    if (this.#states.size >= this.#maxTracked) {
      for (const [k, v] of this.#states) {
        if (v.ewma.pending === 0) {
          this.#states.delete(k);
          break;
        }
      }
    }
    s = { ewma: newEwma(this.#now(), this.#ewma), accrual: HEALTHY };
    this.#states.set(key, s);
    return s;
  }
}
