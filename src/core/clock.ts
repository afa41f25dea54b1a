// Time is injected so tests can move it (certificate rotation, backoff, idle timers).

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Monotonic milliseconds, for durations. */
  monotonic(): number;
}

export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  monotonic: () => performance.now(),
});

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  #now: number;
  #mono = 0;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  monotonic(): number {
    return this.#mono;
  }

  advance(ms: number): void {
    this.#now += ms;
    this.#mono += ms;
  }
}
