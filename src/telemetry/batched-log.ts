// A log destination that gathers info-level and lower lines (the access log: one per
// connection) and hands them on in batches, at most `delayMs` late or `maxBytes` long. An
// asynchronous pino destination otherwise costs a thread-pool round trip per line (futex
// wake, write, eventfd: ~5 syscalls and two context switches per connection). Warnings and
// errors go out at once, after whatever is pending, so the order holds and a crash loses at
// most `delayMs` of access-log lines.

export interface LogTarget {
  write(chunk: string): unknown;
  flush?(callback?: (err?: Error | null) => void): void;
}

export interface BatchedLogOptions {
  /** Longest a batched line waits. Default 50 ms. */
  readonly delayMs?: number;
  /** A batch this long is written at once. Default 16 KiB. */
  readonly maxBytes?: number;
}

// pino writes the level first: {"level":30,... Levels up to info (10, 20, 30) are batched.
const BATCHED = /^\{"level":[123]0,/;

export class BatchedLog {
  readonly #target: LogTarget;
  readonly #delayMs: number;
  readonly #maxBytes: number;
  #pending = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(target: LogTarget, options: BatchedLogOptions = {}) {
    this.#target = target;
    this.#delayMs = options.delayMs ?? 50;
    this.#maxBytes = options.maxBytes ?? 16 * 1024;
  }

  write(chunk: string): boolean {
    this.#pending += chunk;
    if (!BATCHED.test(chunk) || this.#pending.length >= this.#maxBytes) this.#send();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.#send(), this.#delayMs);
      this.#timer.unref();
    }
    return true;
  }

  /** Writes what is pending, then flushes the target (pino's logger.flush() calls this). */
  flush(callback?: (err?: Error | null) => void): void {
    this.#send();
    if (this.#target.flush !== undefined) this.#target.flush(callback);
    else callback?.();
  }

  #send(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#pending === '') return;
    const batch = this.#pending;
    this.#pending = '';
    this.#target.write(batch);
  }
}
