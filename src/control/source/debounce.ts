// Coalesces bursts of change events (an editor's save, a rollout's pod churn) into one
// run of `work`, never running two at once: a trigger during a run schedules one more.
// Bounded: under a steady stream of triggers (churn never pauses for `delayMs`), work
// still runs `maxDelayMs` after the first trigger of the burst, so changes cannot wait
// forever for a quiet moment.
//
// Quiet is judged against the triggers as they arrive, not against the timer alone: when
// the event loop was busy (a control plane pushing to a thousand agents), the quiet timer
// fires late, while the events that came meanwhile still wait unread in their sockets. So
// the timer's callback first lets the loop read what is waiting (setImmediate runs after
// the I/O poll) and runs the work only if that brought no trigger within `delayMs`; under
// steady churn the batches then are `maxDelayMs` long, not "as long as the last run took".

export class Debouncer {
  readonly #delayMs: number;
  readonly #maxDelayMs: number;
  readonly #work: () => Promise<void>;
  readonly #onError: (err: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #checking = false;
  /** When the first trigger not yet worked on came (performance.now()). */
  #firstAt: number | undefined;
  /** When the latest trigger came. */
  #lastAt = 0;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;

  /** `maxDelayMs`: the longest a trigger waits for work to start (default 4 x delayMs, at least delayMs). */
  constructor(delayMs: number, work: () => Promise<void>, onError: (err: unknown) => void, maxDelayMs = 4 * delayMs) {
    this.#delayMs = delayMs;
    this.#maxDelayMs = Math.max(delayMs, maxDelayMs);
    this.#work = work;
    this.#onError = onError;
  }

  trigger(): void {
    if (this.#closed) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    const now = performance.now();
    this.#lastAt = now;
    this.#firstAt ??= now;
    // One timer per burst (not one per trigger): its callback looks at #lastAt.
    if (this.#timer === undefined && !this.#checking) this.#arm(now);
  }

  #arm(now: number): void {
    const first = this.#firstAt ?? now;
    const wait = Math.max(0, Math.min(this.#lastAt + this.#delayMs, first + this.#maxDelayMs) - now);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#checking = true;
      setImmediate(() => this.#check());
    }, wait);
    this.#timer.unref();
  }

  #check(): void {
    this.#checking = false;
    if (this.#closed) return;
    const now = performance.now();
    const first = this.#firstAt ?? now;
    if (now - this.#lastAt < this.#delayMs && now - first < this.#maxDelayMs) {
      this.#arm(now);
      return;
    }
    this.#run();
  }

  #run(): void {
    this.#firstAt = undefined;
    this.#running = this.#work().catch(this.#onError).finally(() => {
      this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        this.trigger();
      }
    });
  }

  /** Cancels a pending run and waits for a running one. Safe to call twice. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}
