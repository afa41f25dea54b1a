// Coalesces bursts of change events (an editor's save, a rollout's pod churn) into one
// run of `work`, never running two at once: a trigger during a run schedules one more.
// Bounded: under a steady stream of triggers (churn never pauses for `delayMs`), work
// still runs `maxDelayMs` after the first trigger of the burst, so changes cannot wait
// forever for a quiet moment.

export class Debouncer {
  readonly #delayMs: number;
  readonly #maxDelayMs: number;
  readonly #work: () => Promise<void>;
  readonly #onError: (err: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  /** When the first trigger not yet worked on came (performance.now()). */
  #firstAt: number | undefined;
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
    this.#firstAt ??= now;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const wait = Math.max(0, Math.min(this.#delayMs, this.#firstAt + this.#maxDelayMs - now));
    this.#timer = setTimeout(() => this.#run(), wait);
    this.#timer.unref();
  }

  #run(): void {
    this.#timer = undefined;
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
