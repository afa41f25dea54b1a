// Warning lines at a bounded rate: a port scan or a flood of refused connections must not
// flood the log. Every event is still counted by the caller's metric; the next line that
// gets out says how many were left out since the last one.

import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';

export class RateLimitedLog {
  readonly #logger: Pick<Logger, 'warn'>;
  readonly #clock: Clock;
  readonly #perSecond: number;
  #windowStart = Number.NEGATIVE_INFINITY;
  #inWindow = 0;
  #suppressed = 0;

  constructor(logger: Pick<Logger, 'warn'>, clock: Clock, perSecond: number) {
    this.#logger = logger;
    this.#clock = clock;
    this.#perSecond = perSecond;
  }

  warn(fields: Record<string, unknown>, msg: string): void {
    const now = this.#clock.monotonic();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (this.#inWindow >= this.#perSecond) {
      this.#suppressed += 1;
      return;
    }
    this.#inWindow += 1;
    const line = this.#suppressed > 0 ? { ...fields, suppressed: this.#suppressed } : fields;
    this.#suppressed = 0;
    this.#logger.warn(line, msg);
  }
}
