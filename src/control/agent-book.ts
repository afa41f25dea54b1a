// The server's book of one agent stream, without a copy of what the agent holds: the agent
// holds the view's resources as of one generation (`held`), except for the versions it
// refused, whose previous version it kept (the node's RejectedVersions). A push is the
// difference between `held` and now, read when the agent is ready for it: an agent busy with
// a push (one at a time, until its ACK) gets everything since in one delta afterwards, the
// newest version of each resource and never an intermediate one.
//
// What changed since `held` is kept up to date as the view moves (AgentBook.observe, at every
// publish: the view's changes of that one step, merged in), not read from the view's history
// when the push is cut: a lagging agent then costs O(the keys changed) per step, however far
// behind it is, and agents that hold the same generation share one change set (merged once
// for all of them), hence one plan and one encoding.
// Big pushes (the first sync of a large node) go in parts of at most `maxBytes`, flagged
// `more` until the last. Pure bookkeeping, no I/O.

import type { ControlResource, ResourceRejection } from './resource.ts';
import { resourceKey } from './resource.ts';
import type { ResourceView } from './resource-view.ts';

/**
 * Versions an agent refused, per resource key, with the version it kept instead. Shared by
 * every stream of one node so that a reconnect does not bring back a version already
 * refused. An entry goes when the resource moves to another version or goes away.
 */
export type RejectedVersions = Map<string, ResourceRejection & { readonly kept: string | undefined }>;

export interface PushPart {
  readonly changed: readonly ControlResource[];
  /** Keys (`type/name`) the agent should drop. */
  readonly removed: readonly string[];
  /** More parts of this push follow; the agent applies this one but serves the config only after the last. */
  readonly more: boolean;
  readonly trigger: 'subscribe' | 'change';
}

export interface PendingPush<M> extends PushPart {
  readonly nonce: string;
  readonly meta: M;
  /** The version a changed resource replaces on the agent (for a refusal: what it keeps). */
  readonly replaces: ReadonlyMap<string, string | undefined>;
}

export interface NackOutcome<M> {
  readonly push: PendingPush<M>;
  readonly rejected: readonly ResourceRejection[];
  /**
   * The agent refused the part as a whole: it applied none of it (removals included), so
   * what it holds is unknown here; the stream must be ended for it to resubscribe with what
   * it holds. The refused versions stay refused.
   */
  readonly resync: boolean;
}

/** The encoded size of a resource, to cut pushes into parts. */
export type ResourceSize = (r: ControlResource) => number;

/** A delta cut into parts: the same object for every agent the view gave the same changes (see PlanCache). */
export interface Plan {
  readonly parts: readonly PushPart[];
  /** The version each changed resource replaces on the agent. */
  readonly replaces: ReadonlyMap<string, string | undefined>;
}

/**
 * Plans shared between agents: under churn most agents are at the same generation and the
 * view gives them the very same changes (the same map), so the same plan and parts serve
 * them all. Valid for one view generation; the server owns one for all its streams.
 */
export class PlanCache {
  #generation = -1;
  readonly #plans = new Map<object, Plan>();

  get(generation: number, changes: object): Plan | undefined {
    return generation === this.#generation ? this.#plans.get(changes) : undefined;
  }

  set(generation: number, changes: object, plan: Plan): void {
    if (generation !== this.#generation) {
      this.#generation = generation;
      this.#plans.clear();
    }
    this.#plans.set(changes, plan);
  }
}

interface Planned {
  readonly plan: Plan;
  /** The generation the agent holds once every part is applied. */
  readonly generation: number;
  /** Whether that is exactly the view at `generation` (false after a first sync read over several generations). */
  readonly exact: boolean;
  next: number;
}

interface FirstSync {
  /** The node's entries (its own only, after `shared`). */
  readonly entries: Iterator<readonly [string, ControlResource]>;
  /** The view's generation when it started (or the shared parts were cut): what the agent holds once it is sent whole. */
  readonly generation: number;
  /** Set when the last part is cut: no change happened while it was read, so the agent holds exactly that generation. */
  exact: boolean;
  /** The shared entries' parts, sent first (the node's own entries, sent last, win over them), and the next to send. */
  readonly shared?: { readonly parts: readonly PushPart[]; next: number };
  /** Shared keys the node does not hold: removed in the last part. */
  readonly hidden?: readonly string[];
  /** With `shared`: the shared version each own entry replaces on the agent (what it keeps if it refuses it). */
  readonly replaces?: ReadonlyMap<string, string | undefined>;
}

/**
 * The view's shared entries (ResourceView.sharedEntries) cut into parts once for the first
 * sync of every agent that holds them: each is sent the very same parts (encoded once by
 * the server), then its own entries. Cut again once older than `maxAge` generations (an agent
 * synced from older parts gets what changed since in its first delta); the server owns one.
 */
export class SharedSyncParts {
  readonly #maxBytes: number;
  readonly #size: ResourceSize;
  readonly #maxAge: number;
  #cut: { readonly view: ResourceView; readonly generation: number; readonly parts: readonly PushPart[] } | undefined;

  constructor(maxBytes: number, size: ResourceSize, maxAge = 100) {
    this.#maxBytes = maxBytes;
    this.#size = size;
    this.#maxAge = maxAge;
  }

  /** The parts and the generation they were cut at; undefined when the view has no shared entries. */
  at(view: ResourceView): { readonly generation: number; readonly parts: readonly PushPart[] } | undefined {
    if (view.sharedEntries === undefined) return undefined;
    const c = this.#cut;
    if (c !== undefined && c.view === view && c.generation <= view.generation && view.generation - c.generation <= this.#maxAge) return c;
    const parts: PushPart[] = [];
    let changed: ControlResource[] = [];
    let bytes = 0;
    for (const [, r] of view.sharedEntries()) {
      changed.push(r);
      bytes += this.#size(r);
      if (bytes >= this.#maxBytes) {
        parts.push({ changed, removed: [], more: true, trigger: 'subscribe' });
        changed = [];
        bytes = 0;
      }
    }
    if (changed.length > 0) parts.push({ changed, removed: [], more: true, trigger: 'subscribe' });
    this.#cut = { view, generation: view.generation, parts };
    return this.#cut;
  }
}

const MAX_REMOVALS_PER_PART = 20_000;

/**
 * Keys a book keeps in its change set. Past it (an agent that fell far behind, on its own) it
 * drops the set and reads its changes from the view's history when its next push is cut, as
 * other books that far behind do (shared per generation): memory stays O(agents x this), not
 * O(agents x the keys changed while they lag).
 */
const MAX_KEPT_CHANGES = 1_000;

type Changes = ReadonlyMap<string, ControlResource | undefined>;

/**
 * Keys changed since the generation an agent holds (or will hold once its push in flight
 * applies), with the resource each was then. One object for every book whose agent holds
 * the same generation and saw the same changes since.
 */
interface Dirty {
  readonly changes: Changes;
  /** Made by observe (may be merged into in place when every book holding it moves together), not the view's. */
  readonly owned: boolean;
  /** Books holding it. */
  refs: number;
}

/** `into` with every key of `more` it does not have yet (the older "then" wins). */
function mergeChanges(into: Map<string, ControlResource | undefined>, more: Changes): Map<string, ControlResource | undefined> {
  for (const [k, v] of more) if (!into.has(k)) into.set(k, v);
  return into;
}


export class AgentBook<M = undefined> {
  readonly node: string;
  readonly #rejected: RejectedVersions;
  readonly #maxBytes: number;
  readonly #size: ResourceSize;
  /** What the agent said it holds when it subscribed (until its first sync is acknowledged). */
  #initial: ReadonlyMap<string, string> | undefined;
  #first: FirstSync | undefined;
  #planned: Planned | undefined;
  #pending: PendingPush<M> | undefined;
  /** The generation the agent holds once the push in flight applies; undefined until its first sync is sent. */
  #held: number | undefined;
  #exact = true;
  #acked: number | undefined;
  /** What changed since the generation the agent holds once everything cut so far applies. */
  #dirty: Dirty | undefined;
  /** The view generation `#dirty` is complete up to; undefined before the first sync starts. */
  #mergedTo: number | undefined;
  /** The view's history no longer reaches `#mergedTo`: the agent must resubscribe. */
  #lost = false;
  /** The generation `#dirty` starts from: what the agent holds once everything cut so far applies. */
  #base: number | undefined;
  /** Too many changes to keep (MAX_KEPT_CHANGES): the next push reads them from the view's history since `#base`. */
  #spilled = false;

  readonly #plans: PlanCache;
  readonly #sharedSync: SharedSyncParts | undefined;

  /**
   * `maxBytes`: a part stops growing once its resources reach this encoded size. `plans` and
   * `sharedSync` are shared by every book of the server.
   */
  constructor(node: string, initial: ReadonlyMap<string, string>, rejected: RejectedVersions, maxBytes: number, size: ResourceSize, plans = new PlanCache(), sharedSync?: SharedSyncParts) {
    this.node = node;
    this.#initial = initial;
    this.#rejected = rejected;
    this.#maxBytes = maxBytes;
    this.#size = size;
    this.#plans = plans;
    this.#sharedSync = sharedSync;
  }

  /**
   * Brings every book's change set up to the view's generation (call it whenever the view
   * moved: a book catches up by itself in next(), but alone). Books given the same changes
   * from the same change set share the merged one: under churn most agents hold one of a few
   * generations, so this costs O(those few x the keys that changed), not O(agents x lag).
   */
  static observe(books: Iterable<AgentBook<unknown>>, view: ResourceView): void {
    const groups = new Map<Dirty | undefined, Map<Changes, AgentBook<unknown>[]>>();
    for (const b of books) {
      let c: Changes | undefined;
      try {
        c = b.#step(view);
      } catch {
        continue; // this node's changes failed (nothing moved): its book catches up, or reports, in next()
      }
      if (c === undefined) continue;
      let buckets = groups.get(b.#dirty);
      if (buckets === undefined) groups.set(b.#dirty, (buckets = new Map<Changes, AgentBook<unknown>[]>()));
      let members = buckets.get(c);
      if (members === undefined) buckets.set(c, (members = []));
      members.push(b);
    }
    for (const [dirty, buckets] of groups) {
      let left = buckets.size;
      for (const [c, members] of buckets) {
        left--;
        let next: Dirty;
        if (dirty === undefined) next = { changes: c, owned: false, refs: 0 };
        else if (left === 0 && dirty.owned && dirty.refs === members.length) {
          // Every book holding it is here and moves on together: merge in place.
          mergeChanges(dirty.changes as Map<string, ControlResource | undefined>, c);
          next = dirty;
        } else next = { changes: mergeChanges(new Map(dirty.changes), c), owned: true, refs: 0 };
        const spill = next.changes.size > MAX_KEPT_CHANGES;
        for (const b of members) {
          if (spill) b.#spill();
          else b.#hold(next);
        }
      }
    }
  }

  /** The view's changes since `#mergedTo` when there are some to merge (and moves `#mergedTo` on). */
  #step(view: ResourceView): Changes | undefined {
    if (this.#mergedTo === undefined || this.#lost || this.#spilled || this.#mergedTo >= view.generation) return undefined;
    const c = view.changesSince(this.node, this.#mergedTo);
    this.#mergedTo = view.generation;
    if (c === undefined) {
      this.#lost = true;
      this.#hold(undefined);
      return undefined;
    }
    return c.size === 0 ? undefined : c;
  }

  #spill(): void {
    this.#hold(undefined);
    this.#spilled = true;
  }

  #hold(next: Dirty | undefined): void {
    if (this.#dirty === next) return;
    if (this.#dirty !== undefined) this.#dirty.refs--;
    this.#dirty = next;
    if (next !== undefined) next.refs++;
  }

  /** This book alone catches up with the view (another book may hold the same change set: never merged in place). */
  #catchUp(view: ResourceView): void {
    const c = this.#step(view);
    if (c === undefined) return;
    const dirty = this.#dirty;
    const next: Dirty = dirty === undefined ? { changes: c, owned: false, refs: 0 } : { changes: mergeChanges(new Map(dirty.changes), c), owned: true, refs: 0 };
    if (next.changes.size > MAX_KEPT_CHANGES) this.#spill();
    else this.#hold(next);
  }

  /** A push awaits its ACK. */
  get busy(): boolean {
    return this.#pending !== undefined;
  }

  /** The part awaiting its answer, if any. */
  get inFlight(): PendingPush<M> | undefined {
    return this.#pending;
  }

  get pendingCount(): number {
    return this.#pending === undefined ? 0 : 1;
  }

  /** The first sync has been sent whole. */
  get synced(): boolean {
    return this.#held !== undefined;
  }

  /** The generation the agent holds once every part sent so far applies (undefined before its first sync is sent whole). */
  get heldGeneration(): number | undefined {
    return this.#held;
  }

  /** The generation the agent acknowledged holding (undefined before its first sync). */
  get ackedGeneration(): number | undefined {
    return this.#acked;
  }

  /**
   * The next part to send, or undefined when the agent is busy, up to date, or (`resync`)
   * too far behind the view's history: then it must resubscribe. The first sync's first
   * part is returned even when empty: it tells the agent its config is current.
   */
  next(view: ResourceView): PushPart | 'resync' | undefined {
    if (this.#pending !== undefined) return undefined;
    if (this.#held === undefined && this.#planned === undefined) {
      if (this.#first === undefined) {
        this.#first = this.#startFirstSync(view);
        // What changes from here on is sent after the first sync, whatever of it the agent got.
        this.#mergedTo = this.#first.generation;
        this.#base = this.#first.generation;
      }
      return this.#firstSyncPart(view, this.#first);
    }
    this.#catchUp(view);
    if (this.#lost) return 'resync';
    if (this.#planned === undefined) {
      let changes = this.#dirty?.changes;
      let at = this.#mergedTo as number;
      if (this.#spilled) {
        changes = view.changesSince(this.node, this.#base as number);
        if (changes === undefined) return 'resync';
        at = view.generation;
        this.#spilled = false;
        this.#mergedTo = at;
      }
      this.#hold(undefined);
      this.#base = at;
      if (changes === undefined || changes.size === 0) {
        this.#held = at;
        return undefined;
      }
      // Shared with every agent given the same changes, unless this one refused something or is inexact.
      const shareable = this.#exact && this.#rejected.size === 0;
      let plan = shareable ? this.#plans.get(at, changes) : undefined;
      if (plan === undefined) {
        plan = this.#plan(view, changes);
        if (shareable) this.#plans.set(at, changes, plan);
      }
      if (plan.parts.length === 0) {
        this.#held = at;
        this.#exact = true;
        return undefined;
      }
      this.#planned = { plan, generation: at, exact: true, next: 0 };
    }
    const planned = this.#planned;
    return planned.plan.parts[planned.next++];
  }

  /** Records the part returned by next() as sent. */
  sent(nonce: string, part: PushPart, meta: M): PendingPush<M> {
    const p = this.#planned;
    // A first sync replaces what the agent said it held; a delta, what it held at `held`.
    const f = this.#first;
    const own = f?.shared === undefined || !f.shared.parts.includes(part);
    const replaces = p?.plan.replaces ?? (own ? f?.replaces : undefined) ?? this.#initial ?? new Map<string, string>();
    const push: PendingPush<M> = Object.freeze({ ...part, nonce, meta, replaces });
    this.#pending = push;
    if (!part.more) {
      if (p !== undefined) {
        this.#held = p.generation;
        this.#exact = p.exact;
        this.#planned = undefined;
      } else if (this.#first !== undefined) {
        this.#held = this.#first.generation;
        // Read over several generations, the agent may hold newer versions than `held` of
        // what changed meanwhile: the next delta then resends those whatever they were.
        this.#exact = this.#first.exact;
        this.#first = undefined;
      }
    }
    return push;
  }

  /** The agent applied the whole part. Undefined when the nonce is not the one in flight. */
  ack(nonce: string): PendingPush<M> | undefined {
    const push = this.#take(nonce);
    if (push !== undefined && !push.more) this.#answeredWhole();
    return push;
  }

  /**
   * The agent refused some resources of the part (named in `refusals`; none named: all of
   * them) and applied the rest. Refused versions are not sent again until they change.
   */
  nack(nonce: string, refusals: readonly { readonly key: string; readonly message: string }[], errorMessage: string): NackOutcome<M> | undefined {
    const push = this.#take(nonce);
    if (push === undefined) return undefined;
    const whole = refusals.length === 0;
    const why = new Map(refusals.map((r) => [r.key, r.message]));
    const rejected: ResourceRejection[] = [];
    for (const r of push.changed) {
      const key = resourceKey(r);
      const message = whole ? errorMessage : why.get(key);
      if (message === undefined) continue;
      const rejection = Object.freeze({ key, version: r.version, message, kept: push.replaces.get(key) });
      this.#rejected.set(key, rejection);
      rejected.push(Object.freeze({ key, version: r.version, message }));
    }
    if (!push.more) this.#answeredWhole();
    return { push, rejected, resync: whole };
  }

  /**
   * The versions the agent acknowledged holding, by key, reconstructed from the view and its
   * history: O(the node's resources), for status pages, not for every push. After a first
   * sync read while the view changed, keys changed meanwhile may show their older version.
   */
  acked(view: ResourceView): Map<string, string> {
    if (this.#acked === undefined) return new Map(this.#initial);
    const out = new Map<string, string>();
    for (const [k, r] of view.entries(this.node)) out.set(k, r.version);
    const since = view.changesSince(this.node, this.#acked);
    for (const [k, then] of since ?? []) {
      if (then === undefined) out.delete(k);
      else out.set(k, then.version);
    }
    for (const [k, rej] of this.#rejected) {
      if (rej.kept === undefined) out.delete(k);
      else out.set(k, rej.kept);
    }
    return out;
  }

  #answeredWhole(): void {
    this.#acked = this.#held;
    if (this.#held !== undefined) this.#initial = undefined;
  }

  #take(nonce: string): PendingPush<M> | undefined {
    const push = this.#pending;
    if (push?.nonce !== nonce) return undefined;
    this.#pending = undefined;
    return push;
  }

  // The difference between what the agent holds (the view at `held`, or unknown for the keys
  // that changed since when inexact) and now.
  #plan(view: ResourceView, since: Changes): Plan {
    const changed: ControlResource[] = [];
    const removed: string[] = [];
    const replaces = new Map<string, string | undefined>();
    for (const [key, then] of since) {
      const now = view.current(this.node, key);
      const refused = this.#rejected.get(key);
      const holds = refused !== undefined ? refused.kept : then?.version;
      if (now !== undefined && refused?.version === now.version) continue; // refused exactly this: wait for a new version
      if (this.#exact && now?.version === holds) {
        if (refused !== undefined) this.#rejected.delete(key); // back to the version it kept
        continue;
      }
      if (refused !== undefined) this.#rejected.delete(key);
      if (now !== undefined) {
        changed.push(now);
        replaces.set(key, holds);
      } else if (!this.#exact || holds !== undefined) {
        removed.push(key);
      }
    }
    return { parts: this.#cut(changed, removed, 'change'), replaces };
  }

  // Parts of at most maxBytes of resources (a part stops growing once it reaches it); removals ride the last.
  #cut(all: readonly ControlResource[], removed: readonly string[], trigger: PushPart['trigger']): PushPart[] {
    if (all.length === 0 && removed.length === 0) return [];
    const parts: PushPart[] = [];
    let changed: ControlResource[] = [];
    let bytes = 0;
    for (const r of all) {
      if (bytes >= this.#maxBytes) {
        parts.push({ changed, removed: [], more: true, trigger });
        changed = [];
        bytes = 0;
      }
      changed.push(r);
      bytes += this.#size(r);
    }
    parts.push({ changed, removed, more: false, trigger });
    return parts;
  }

  // A fresh agent (holding nothing, refusing nothing) of a node with the shared entries gets
  // their shared parts, then its own entries; any other, every entry read for it alone.
  #startFirstSync(view: ResourceView): FirstSync {
    const fresh = (this.#initial === undefined || this.#initial.size === 0) && this.#rejected.size === 0;
    const layers = fresh ? view.layers?.(this.node) : undefined;
    const common = layers?.shared === true ? this.#sharedSync?.at(view) : undefined;
    // Its first delta is what changed since the parts were cut: the history must still have it.
    if (layers !== undefined && common !== undefined && (common.generation === view.generation || view.changesSince(this.node, common.generation) !== undefined)) {
      const shared = view.sharedEntries?.();
      const replaces = new Map<string, string | undefined>();
      const own = [...layers.own];
      for (const [k] of own) replaces.set(k, shared?.get(k)?.version);
      return { entries: own[Symbol.iterator](), generation: common.generation, exact: false, shared: { parts: common.parts, next: 0 }, hidden: layers.hidden, replaces };
    }
    return { entries: view.entries(this.node)[Symbol.iterator](), generation: view.generation, exact: false };
  }

  #firstSyncPart(view: ResourceView, f: FirstSync): PushPart {
    const shared = f.shared;
    if (shared !== undefined && shared.next < shared.parts.length) return shared.parts[shared.next++];
    const initial = this.#initial ?? new Map<string, string>();
    const changed: ControlResource[] = [];
    let bytes = 0;
    for (;;) {
      const step = f.entries.next();
      if (step.done === true) break;
      const [key, now] = step.value;
      const refused = this.#rejected.get(key);
      if (refused !== undefined && refused.version === now.version) continue;
      if (refused !== undefined) this.#rejected.delete(key);
      if (initial.get(key) === now.version) continue;
      changed.push(now);
      bytes += this.#size(now);
      if (bytes >= this.#maxBytes) return { changed, removed: [], more: true, trigger: 'subscribe' };
    }
    f.exact = view.generation === f.generation;
    const removed: string[] = [...(f.hidden ?? [])];
    for (const key of initial.keys()) {
      if (view.current(this.node, key) !== undefined) continue;
      removed.push(key);
      this.#rejected.delete(key);
    }
    if (removed.length > MAX_REMOVALS_PER_PART) {
      // Very many removals (an agent back from a much larger cluster): a planned remainder.
      this.#planned = { plan: { parts: this.#cut([], removed.slice(MAX_REMOVALS_PER_PART), 'subscribe'), replaces: new Map() }, generation: f.generation, exact: f.exact, next: 0 };
      this.#first = undefined;
      this.#held = undefined;
      return { changed, removed: removed.slice(0, MAX_REMOVALS_PER_PART), more: true, trigger: 'subscribe' };
    }
    return { changed, removed, more: false, trigger: 'subscribe' };
  }
}
