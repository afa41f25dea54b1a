// Connected upstreams waiting to be used by a sender before it dials (the destination agent
// connects to the pod to admit a tunnel stream, and that connection serves the first
// request). Unused ones are closed after a while, so none is held forever.

import type { UpstreamStream } from '../upstream.ts';

export class SpareConnections {
  readonly #spare = new Map<UpstreamStream, NodeJS.Timeout>();

  get size(): number {
    return this.#spare.size;
  }

  add(connection: UpstreamStream, idleMs: number): void {
    const timer = setTimeout(() => {
      this.#spare.delete(connection);
      connection.destroy();
    }, idleMs);
    timer.unref();
    this.#spare.set(connection, timer);
    connection.once('close', () => {
      clearTimeout(timer);
      this.#spare.delete(connection);
    });
  }

  /** A live spare connection, taken out of the set; undefined when none is left. */
  take(): UpstreamStream | undefined {
    for (const [c, timer] of this.#spare) {
      this.#spare.delete(c);
      clearTimeout(timer);
      if (!c.destroyed) return c;
    }
    return undefined;
  }

  destroyAll(): void {
    for (const [c, timer] of this.#spare) {
      clearTimeout(timer);
      c.destroy();
    }
    this.#spare.clear();
  }
}
