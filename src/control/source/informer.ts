// One kind's informer: list, then watch from the list's resourceVersion (with bookmarks),
// keeping a cache by namespace and name and calling add / update / delete as it changes.
// A watch the server ends, or that falls silent, resumes from the last resourceVersion; a
// 410 Gone (the version is too old) relists, and the relist's differences from the cache
// are delivered as the events they amount to. Any other failure goes to the error callbacks
// and ends the run; start() again resumes from the resourceVersion it held (no relist).
// The semantics of client-node's ListWatch, which KubernetesSource used before (see
// kube-access.ts for why not client-node).

import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeAccess } from './kube-access.ts';
import { ApiStatusError, kubeWatch, type WatchEvent } from './kube-http.ts';

type Obj = Record<string, unknown>;

export interface InformerList {
  readonly metadata: { readonly resourceVersion: string };
  readonly items: readonly Obj[];
}

export interface InformerOptions {
  readonly access: KubeAccess;
  /** Collection path, e.g. `/api/v1/pods`. */
  readonly path: string;
  /** The first list and every relist. */
  readonly list: () => Promise<InformerList>;
  /** What of each watched object to keep (the list applies the same itself). */
  readonly keep: (o: Obj) => Obj;
  /** Longest wait before re-watching after watches that ended without an event (default 30 s). */
  readonly maxDelayMs?: number;
  /** A watch silent this long is reopened (default 30 s, as client-node). */
  readonly idleMs?: number;
}

type Verb = 'add' | 'update' | 'delete';

const metadataOf = (o: Obj): { namespace?: unknown; name?: unknown; resourceVersion?: unknown } => (typeof o.metadata === 'object' && o.metadata !== null ? o.metadata : {});
const text = (v: unknown): string => (typeof v === 'string' ? v : '');
const nsOf = (o: Obj): string => text(metadataOf(o).namespace);
const nameOf = (o: Obj): string => text(metadataOf(o).name);
const versionOf = (o: Obj): unknown => metadataOf(o).resourceVersion;

const BASE_DELAY_MS = 1000;

export class Informer {
  readonly #o: InformerOptions;
  readonly #callbacks: Record<Verb, ((o: Obj) => void)[]> = { add: [], update: [], delete: [] };
  readonly #errors: ((err: unknown) => void)[] = [];
  /** namespace -> name -> object */
  #objects = new Map<string, Map<string, Obj>>();
  #resourceVersion = '';
  #stopped = false;
  #run = 0;
  #controller: AbortController | undefined;

  constructor(options: InformerOptions) {
    this.#o = options;
  }

  on(verb: Verb, cb: (o: Obj) => void): void {
    this.#callbacks[verb].push(cb);
  }

  onError(cb: (err: unknown) => void): void {
    this.#errors.push(cb);
  }

  get(name: string, namespace?: string): Obj | undefined {
    return this.#objects.get(namespace ?? '')?.get(name);
  }

  list(): Obj[] {
    const out: Obj[] = [];
    for (const byName of this.#objects.values()) out.push(...byName.values());
    return out;
  }

  /** Lists if it holds no resourceVersion, then watches until stop() or a failure (given to the error callbacks). */
  async start(): Promise<void> {
    this.#stopped = false;
    this.#controller?.abort();
    const run = ++this.#run;
    const live = (): boolean => !this.#stopped && run === this.#run;
    let delay = 0;
    let connected = false;
    while (live()) {
      if (this.#resourceVersion === '') {
        let list: InformerList;
        try {
          list = await this.#o.list();
        } catch (err: unknown) {
          if (live()) this.#fail(err);
          return;
        }
        if (!live()) return;
        this.#replace(list.items);
        this.#resourceVersion = list.metadata.resourceVersion;
      }
      if (delay > 0 && connected) await sleep(Math.min(delay, this.#o.maxDelayMs ?? 30_000), undefined, { ref: false });
      if (!live()) return;
      if (connected) delay = Math.min(delay > 0 ? delay * 2 : BASE_DELAY_MS, 30_000);
      connected = true;
      const controller = new AbortController();
      this.#controller = controller;
      const query = new URLSearchParams({ allowWatchBookmarks: 'true', watch: 'true', resourceVersion: this.#resourceVersion });
      try {
        await kubeWatch(this.#o.access, `${this.#o.path}?${query.toString()}`, (e) => {
          if (live() && this.#event(e)) delay = 0;
        }, controller.signal, this.#o.idleMs ?? 30_000);
      } catch (err: unknown) {
        if (!live()) return;
        if (err instanceof ApiStatusError && err.statusCode === 410) this.#resourceVersion = '';
        else {
          this.#fail(err);
          return;
        }
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#controller?.abort();
    this.#controller = undefined;
    return Promise.resolve();
  }

  #fail(err: unknown): void {
    for (const cb of this.#errors) cb(err);
  }

  /** One watch event; true when it was a change or a bookmark (the watch is healthy). */
  #event(e: WatchEvent): boolean {
    if (e.type === 'ERROR') {
      if (e.object.code === 410) this.#resourceVersion = '';
      return false;
    }
    if (e.type === 'ADDED' || e.type === 'MODIFIED') this.#upsert(this.#o.keep(e.object));
    else if (e.type === 'DELETED') this.#remove(this.#o.keep(e.object));
    else if (e.type !== 'BOOKMARK') return false;
    const rv = versionOf(e.object);
    this.#resourceVersion = typeof rv === 'string' ? rv : '';
    return true;
  }

  #emit(verb: Verb, o: Obj): void {
    for (const cb of this.#callbacks[verb]) cb(o);
  }

  #upsert(o: Obj): void {
    const ns = nsOf(o);
    let byName = this.#objects.get(ns);
    if (byName === undefined) this.#objects.set(ns, (byName = new Map<string, Obj>()));
    const name = nameOf(o);
    const found = byName.get(name);
    if (found === undefined) {
      byName.set(name, o);
      this.#emit('add', o);
    } else if (versionOf(found) === undefined || versionOf(found) !== versionOf(o)) {
      byName.set(name, o);
      this.#emit('update', o);
    }
  }

  #remove(o: Obj): void {
    const ns = nsOf(o);
    const byName = this.#objects.get(ns);
    if (byName?.delete(nameOf(o)) !== true) return;
    if (byName.size === 0) this.#objects.delete(ns);
    this.#emit('delete', o);
  }

  /** A (re)list: what is gone is deleted, the rest added or updated. */
  #replace(items: readonly Obj[]): void {
    const listed = new Set(items.map((o) => `${nsOf(o)}\0${nameOf(o)}`));
    for (const [ns, byName] of [...this.#objects]) {
      for (const [name, o] of [...byName]) if (!listed.has(`${ns}\0${name}`)) this.#remove(o);
    }
    for (const o of items) this.#upsert(o);
  }
}
