// Bounds the config the server has handed to gRPC and not yet had acknowledged, over every
// agent stream together: a part is sent when its bytes fit (first come, first served), and
// its bytes come back with the agent's answer or when its stream goes. With one part in
// flight per agent, a slow or stalled agent holds at most one part; a thousand agents
// syncing at once queue instead of filling memory. Pure bookkeeping.

export class PushBudget<T> {
  readonly #total: number;
  #free: number;
  readonly #waiting: Array<{ readonly who: T; readonly bytes: number; readonly go: () => void }> = [];

  constructor(totalBytes: number) {
    this.#total = totalBytes;
    this.#free = totalBytes;
  }

  get freeBytes(): number {
    return this.#free;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Takes `bytes` now (true), or queues `go` to run once they are taken (false). A part
   * bigger than the whole budget goes when nothing else is in flight.
   */
  take(who: T, bytes: number, go: () => void): boolean {
    const need = Math.min(bytes, this.#total);
    if (this.#waiting.length === 0 && need <= this.#free) {
      this.#free -= need;
      return true;
    }
    this.#waiting.push({ who, bytes: need, go });
    return false;
  }

  release(bytes: number): void {
    this.#free = Math.min(this.#total, this.#free + Math.min(bytes, this.#total));
    while (this.#waiting.length > 0) {
      const head = this.#waiting[0];
      if (head.bytes > this.#free) return;
      this.#waiting.shift();
      this.#free -= head.bytes;
      head.go();
    }
  }

  /** Drops what `who` waits for (its stream went). */
  forget(who: T): void {
    for (let i = this.#waiting.length - 1; i >= 0; i--) if (this.#waiting[i]?.who === who) this.#waiting.splice(i, 1);
    this.release(0);
  }
}
