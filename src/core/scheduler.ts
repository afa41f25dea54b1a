// Timers are injected next to the Clock so rotation, backoff and reconnects can be driven
// by a test without real sleeps. One Scheduler serves identity and control alike.

import type { ManualClock } from './clock.ts';

export interface TimerHandle {
  cancel(): void;
}

export interface Scheduler {
  /** Runs `fn` once after `delayMs`. Must not keep the process alive. */
  schedule(delayMs: number, fn: () => void): TimerHandle;
}

// setTimeout fires at once for delays past 2^31-1 ms; callers re-check the clock when a timer
// fires, so clamping only costs an extra wake-up every ~24.8 days.
const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemScheduler: Scheduler = Object.freeze({
  schedule(delayMs: number, fn: () => void): TimerHandle {
    const timer = setTimeout(fn, Math.min(Math.max(0, delayMs), MAX_TIMER_MS));
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
});

interface ManualTimer {
  readonly due: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/**
 * A Scheduler over a ManualClock: nothing runs until the test advances time, and then timers
 * run in due order with the clock set to each one's due time.
 */
export class ManualScheduler implements Scheduler {
  readonly clock: ManualClock;
  #timers: ManualTimer[] = [];
  #seq = 0;

  constructor(clock: ManualClock) {
    this.clock = clock;
  }

  schedule(delayMs: number, fn: () => void): TimerHandle {
    const timer: ManualTimer = { due: this.clock.now() + Math.max(0, delayMs), seq: this.#seq++, fn, cancelled: false };
    this.#timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
        this.#timers = this.#timers.filter((t) => t !== timer);
      },
    };
  }

  /** Milliseconds from now until each pending timer, soonest first. */
  pendingDelays(): number[] {
    return this.#ordered().map((t) => t.due - this.clock.now());
  }

  /** Moves the clock forward by `ms`, running every timer that falls due on the way. Returns how many ran. */
  advance(ms: number): number {
    const target = this.clock.now() + ms;
    let ran = 0;
    for (let next = this.#ordered()[0]; next !== undefined && next.due <= target; next = this.#ordered()[0]) {
      this.#fire(next);
      ran++;
    }
    if (target > this.clock.now()) this.clock.advance(target - this.clock.now());
    return ran;
  }

  /** Moves the clock to the soonest timer and runs it. Returns the delay it waited, or undefined if none was pending. */
  advanceToNext(): number | undefined {
    const next = this.#ordered()[0];
    if (next === undefined) return undefined;
    const waited = Math.max(0, next.due - this.clock.now());
    this.#fire(next);
    return waited;
  }

  #fire(timer: ManualTimer): void {
    if (timer.due > this.clock.now()) this.clock.advance(timer.due - this.clock.now());
    this.#timers = this.#timers.filter((t) => t !== timer);
    timer.fn();
  }

  #ordered(): ManualTimer[] {
    return this.#timers.filter((t) => !t.cancelled).sort((a, b) => a.due - b.due || a.seq - b.seq);
  }
}
