// Coalesces bursts of change events (an editor's save, a rollout's pod churn) into one
// run of `work`, never running two at once: a trigger during a run schedules one more.

export class Debouncer {
  readonly #delayMs: number;
  readonly #work: () => Promise<void>;
  readonly #onError: (err: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(delayMs: number, work: () => Promise<void>, onError: (err: unknown) => void) {
    this.#delayMs = delayMs;
    this.#work = work;
    this.#onError = onError;
  }

  trigger(): void {
    if (this.#closed) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#run(), this.#delayMs);
    this.#timer.unref();
  }

  #run(): void {
    this.#timer = undefined;
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
