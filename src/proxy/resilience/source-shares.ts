// Fair sharing of one proxy worker between the pods that call through it: at most `limit`
// requests of one source are being served at once; the source's further requests wait their
// turn, in arrival order, and are never refused. So a pod that floods its node's agent with
// requests gets the agent's work in bounded slices, and every other pod's request is taken
// up as soon as it arrives instead of queueing behind the flood in the event loop. A source's
// waiting requests are bounded by its connections (one request at a time per HTTP/1.1
// connection, the stream cap per HTTP/2 one), which the per-source connection caps bound.

import { ProxyErrors, proxyError } from '../errors.ts';

interface Share {
  active: number;
  readonly waiting: (() => void)[];
}

/** Releases one slot; a second call does nothing. */
export type Release = () => void;

export class SourceShares {
  readonly limit: number;
  readonly #sources = new Map<string, Share>();

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw proxyError(ProxyErrors.BAD_OPTION, `requests per source must be an integer >= 1, got ${limit}`);
    this.limit = limit;
  }

  /**
   * A slot for one request of `source`: at once while the source has fewer than `limit`
   * served, else after its earlier requests. `waited` is true when it had to wait. Rejects
   * when `signal` fires first (the client left).
   */
  async acquire(source: string, signal: AbortSignal): Promise<{ release: Release; waited: boolean }> {
    const free = this.tryAcquire(source);
    if (free !== undefined) return { release: free, waited: false };
    const share = this.#share(source);
    await new Promise<void>((resolve, reject) => {
      const go = (): void => {
        signal.removeEventListener('abort', gone);
        resolve();
      };
      const gone = (): void => {
        const i = share.waiting.indexOf(go);
        if (i >= 0) share.waiting.splice(i, 1);
        this.#forget(source, share);
        reject(new Error('the client left while its request waited for its share'));
      };
      if (signal.aborted) {
        gone();
        return;
      }
      signal.addEventListener('abort', gone, { once: true });
      share.waiting.push(go);
    });
    return { release: this.#releaser(source, share), waited: true };
  }

  /**
   * A slot for one request of `source` if one is free now (no earlier request of it waits),
   * without a promise: the common case, on every request's path. Undefined: call acquire.
   */
  tryAcquire(source: string): Release | undefined {
    const s = this.#share(source);
    if (s.active >= this.limit || s.waiting.length > 0) return undefined;
    s.active += 1;
    return this.#releaser(source, s);
  }

  #share(source: string): Share {
    let s = this.#sources.get(source);
    if (s === undefined) {
      s = { active: 0, waiting: [] };
      this.#sources.set(source, s);
    }
    return s;
  }

  /** Requests of `source` served now and waiting (for tests and the admin page). */
  stats(source: string): { active: number; waiting: number } {
    const s = this.#sources.get(source);
    return { active: s?.active ?? 0, waiting: s?.waiting.length ?? 0 };
  }

  /** Sources with a request served or waiting. */
  get size(): number {
    return this.#sources.size;
  }

  #releaser(source: string, s: Share): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      // The slot passes straight to the next waiter of the same source, if any.
      const next = s.waiting.shift();
      if (next !== undefined) {
        next();
        return;
      }
      s.active -= 1;
      this.#forget(source, s);
    };
  }

  #forget(source: string, s: Share): void {
    if (s.active === 0 && s.waiting.length === 0 && this.#sources.get(source) === s) this.#sources.delete(source);
  }
}
