// Circuit breaking as Istio's DestinationRule connectionPool means it: at most N of something
// (connections to a service, requests waiting for or holding an upstream connection) at once;
// one over the limit is refused at once (HTTP 503 with the flag UO), never queued. Counters
// sit in shared memory so the limit holds for the agent, however many worker threads share it.

import { ProxyErrors, proxyError } from '../errors.ts';
import { keyTag } from './token-bucket.ts';

/** Shared memory for `count` counters; create once per agent, hand to every worker. */
export function counterMemory(count: number): SharedArrayBuffer {
  if (!Number.isInteger(count) || count < 1 || count > 1 << 20) throw proxyError(ProxyErrors.BAD_OPTION, `counters must be 1-${1 << 20}, got ${count}`);
  return new SharedArrayBuffer(count * 4);
}

/** A permit: release it exactly once (a second call does nothing). */
export interface Permit {
  release(): void;
}

const NOOP: Permit = Object.freeze({ release: (): void => undefined });

/** One more on counter `i` if it is under `limit`, as a permit that gives it back once. */
function acquire(cells: Int32Array, i: number, limit: number): Permit | undefined {
  if (Atomics.add(cells, i, 1) >= limit) {
    Atomics.sub(cells, i, 1);
    return undefined;
  }
  let held = true;
  return {
    release: (): void => {
      if (!held) return;
      held = false;
      Atomics.sub(cells, i, 1);
    },
  };
}

/** One counter of a shared array with a limit. */
export class ConcurrencyLimit {
  readonly limit: number;
  readonly #cells: Int32Array;
  readonly #index: number;

  constructor(limit: number, memory: SharedArrayBuffer = counterMemory(1), index = 0) {
    if (!Number.isInteger(limit) || limit < 1) throw proxyError(ProxyErrors.BAD_OPTION, `a concurrency limit must be an integer >= 1, got ${limit}`);
    this.limit = limit;
    this.#cells = new Int32Array(memory);
    if (!Number.isInteger(index) || index < 0 || index >= this.#cells.length) throw proxyError(ProxyErrors.BAD_OPTION, `counter index ${index} is outside the memory's ${this.#cells.length}`);
    this.#index = index;
  }

  /** A permit while under the limit; undefined (refuse, do not wait) at it. */
  tryAcquire(): Permit | undefined {
    return acquire(this.#cells, this.#index, this.limit);
  }

  get inUse(): number {
    return Atomics.load(this.#cells, this.#index);
  }
}

/** A permit when there is no limit to keep. */
export function unlimited(): Permit {
  return NOOP;
}

/** Whether a connection that has served `served` requests must be retired (maxRequestsPerConnection; 0: never). */
export function connectionSpent(served: number, maxRequestsPerConnection: number): boolean {
  return maxRequestsPerConnection > 0 && served >= maxRequestsPerConnection;
}

/**
 * Limits by key (a destination Service) over one shared Int32Array: keys hash onto a fixed
 * number of counters, so memory is bounded; two keys sharing a counter are limited together,
 * which is stricter, never looser. Create the memory once per agent (counterMemory) and hand
 * it to every worker.
 */
export class ConcurrencyLimits {
  readonly #cells: Int32Array;

  constructor(memory: SharedArrayBuffer) {
    this.#cells = new Int32Array(memory);
  }

  /** A permit while `key` holds fewer than `limit`; undefined (refuse at once) at it. */
  tryAcquire(key: string, limit: number): Permit | undefined {
    return acquire(this.#cells, (keyTag(key) >>> 0) % this.#cells.length, limit);
  }

  inUse(key: string): number {
    return Atomics.load(this.#cells, (keyTag(key) >>> 0) % this.#cells.length);
  }
}
