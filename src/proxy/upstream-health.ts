// Per-endpoint state the load balancer reads: connections in flight and outlier ejections.
// One instance per agent, shared by every listener that connects to endpoints.

import type { Clock } from '../core/clock.ts';
import type { LoadSnapshot } from './load-balancer.ts';
import { OutlierDetector, type OutlierOptions } from './outlier-detector.ts';

export class UpstreamHealth implements LoadSnapshot {
  readonly #active = new Map<string, number>();
  readonly outliers: OutlierDetector;

  constructor(clock: Clock, outlier: OutlierOptions = {}) {
    this.outliers = new OutlierDetector(clock, outlier);
  }

  active(key: string): number {
    return this.#active.get(key) ?? 0;
  }

  ejected(key: string): boolean {
    return this.outliers.ejected(key);
  }

  /** A connection to `key` starts (counts until `release`). */
  acquire(key: string): void {
    this.#active.set(key, (this.#active.get(key) ?? 0) + 1);
  }

  release(key: string): void {
    const n = (this.#active.get(key) ?? 0) - 1;
    if (n <= 0) this.#active.delete(key);
    else this.#active.set(key, n);
  }

  connected(key: string): void {
    this.outliers.success(key);
  }

  failed(key: string): boolean {
    return this.outliers.failure(key);
  }
}
