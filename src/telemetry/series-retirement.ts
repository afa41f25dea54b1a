// Metric series of workloads that are gone (issue 9, point 8): a label-set map that would
// otherwise only grow with pod churn. When the mesh changes, series whose source or
// destination workload is no longer in it are marked; a marked series is still reported by
// the next scrape (its last counts reach Prometheus) and dropped when the scrape after that
// starts, or at the next mesh change if nothing scraped meanwhile, so memory is bounded with
// or without a scraper. A series that is used again while marked (a late connection of the
// pod) is kept. Pure bookkeeping over a Map; the metric classes call it.

/** The workload labels a series carries (Istio's names). */
export interface WorkloadLabels {
  readonly source_workload: string;
  readonly source_workload_namespace: string;
  readonly destination_workload: string;
  readonly destination_workload_namespace: string;
}

/** Whether a workload (namespace, name as the metrics show it) is in the mesh now. */
export type LiveWorkload = (namespace: string, workload: string) => boolean;

const UNKNOWN = 'unknown';

/** Pure: whether a series names a workload that is gone ('unknown' is never gone). */
export function namesGoneWorkload(l: WorkloadLabels, live: LiveWorkload): boolean {
  const gone = (ns: string, w: string): boolean => w !== UNKNOWN && !live(ns, w);
  return gone(l.source_workload_namespace, l.source_workload) || gone(l.destination_workload_namespace, l.destination_workload);
}

type Mark = 'marked' | 'reported';

export class RetiringSeries<V extends { readonly labels: WorkloadLabels }> {
  readonly #entries = new Map<string, V>();
  readonly #marks = new Map<string, Mark>();
  readonly #dropped: (v: V) => void;

  /** `dropped` runs for each series removed (e.g. to remove its histogram label sets). */
  constructor(dropped: (v: V) => void = () => undefined) {
    this.#dropped = dropped;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The series of `key`; a marked one that is used again is kept. */
  get(key: string): V | undefined {
    const v = this.#entries.get(key);
    if (v !== undefined && this.#marks.size > 0) this.#marks.delete(key);
    return v;
  }

  set(key: string, v: V): void {
    this.#entries.set(key, v);
  }

  values(): IterableIterator<V> {
    return this.#entries.values();
  }

  /** A mesh change: series marked before are dropped; those naming a gone workload are marked. Returns how many were dropped. */
  retain(live: LiveWorkload): number {
    const dropped = this.#drop(() => true);
    for (const [key, v] of this.#entries) {
      if (namesGoneWorkload(v.labels, live)) this.#marks.set(key, 'marked');
    }
    return dropped;
  }

  /**
   * Call at the start of each scrape, before the series are published: those reported by the
   * previous scrape go; those marked since are reported by this one, then go at the next.
   */
  scraping(): void {
    if (this.#marks.size === 0) return;
    this.#drop((m) => m === 'reported');
    for (const key of this.#marks.keys()) this.#marks.set(key, 'reported');
  }

  #drop(which: (m: Mark) => boolean): number {
    let n = 0;
    for (const [key, mark] of this.#marks) {
      if (!which(mark)) continue;
      const v = this.#entries.get(key);
      this.#entries.delete(key);
      this.#marks.delete(key);
      if (v !== undefined) {
        this.#dropped(v);
        n += 1;
      }
    }
    return n;
  }
}
