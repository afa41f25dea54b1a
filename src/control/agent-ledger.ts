// The server's book of one agent stream: which version of each resource the agent has
// acknowledged, what it will hold once every push in flight applies (the "view" the next
// diff is computed against), and which pushes await an ACK or NACK. Pure bookkeeping, no I/O.
//
// Agents answer pushes in order, so when the answer to push N arrives every earlier push
// has been answered and `acked` is exactly what the agent held before N.

import { resourceKey, type ControlResource, type ResourceRejection } from './resource.ts';

export interface PushPlan {
  /** Added or changed resources, in key order. */
  readonly changed: readonly ControlResource[];
  /** Keys (`type/name`) the agent holds that it should drop. */
  readonly removed: readonly string[];
}

export interface PendingPush<M> extends PushPlan {
  readonly nonce: string;
  /** Whatever the server attaches (timestamps for latency). */
  readonly meta: M;
}

export interface NackOutcome<M> {
  readonly push: PendingPush<M>;
  /** The rejections recorded, each with the version that was refused. */
  readonly rejected: readonly ResourceRejection[];
}

/**
 * Versions an agent refused, per resource key. Shared by every stream of one node so that
 * a reconnect does not bring back a version already refused. An entry is dropped when the
 * resource moves to another version or goes away.
 */
export type RejectedVersions = Map<string, ResourceRejection>;

export class AgentLedger<M = undefined> {
  readonly #acked: Map<string, string>;
  readonly #view: Map<string, string>;
  readonly #pending = new Map<string, PendingPush<M>>();
  readonly #rejected: RejectedVersions;

  /** `initial`: the versions the agent says it holds when it subscribes. */
  constructor(initial: ReadonlyMap<string, string>, rejected: RejectedVersions) {
    this.#acked = new Map(initial);
    this.#view = new Map(initial);
    this.#rejected = rejected;
  }

  /** What to send so the agent converges on `desired` (keyed by `type/name`). Empty when in sync. */
  plan(desired: ReadonlyMap<string, ControlResource>): PushPlan {
    const changed: ControlResource[] = [];
    const removed: string[] = [];
    for (const key of [...desired.keys()].sort()) {
      const r = desired.get(key) as ControlResource;
      const refused = this.#rejected.get(key);
      if (refused !== undefined) {
        if (refused.version === r.version) continue; // the agent refused exactly this; wait for a new version
        this.#rejected.delete(key);
      }
      if (this.#view.get(key) !== r.version) changed.push(r);
    }
    for (const key of [...this.#view.keys()].sort()) if (!desired.has(key)) removed.push(key);
    for (const key of [...this.#rejected.keys()]) if (!desired.has(key)) this.#rejected.delete(key);
    return { changed, removed };
  }

  /** Records a push as sent; the view assumes it will apply. */
  sent(nonce: string, plan: PushPlan, meta: M): void {
    for (const r of plan.changed) this.#view.set(resourceKey(r), r.version);
    for (const key of plan.removed) this.#view.delete(key);
    this.#pending.set(nonce, Object.freeze({ nonce, changed: plan.changed, removed: plan.removed, meta }));
  }

  /** The agent applied the whole push. Undefined when the nonce is not one in flight (stale or foreign). */
  ack(nonce: string): PendingPush<M> | undefined {
    const push = this.#take(nonce);
    if (push === undefined) return undefined;
    for (const r of push.changed) this.#acked.set(resourceKey(r), r.version);
    for (const key of push.removed) this.#acked.delete(key);
    return push;
  }

  /**
   * The agent refused some resources of the push and applied the rest. `refusals` names the
   * bad ones; an empty list means it refused the push as a whole.
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
      if (message === undefined) {
        this.#acked.set(key, r.version);
        continue;
      }
      const rejection = Object.freeze({ key, version: r.version, message });
      this.#rejected.set(key, rejection);
      rejected.push(rejection);
      this.#revert(key, r.version);
    }
    for (const key of push.removed) {
      if (whole) this.#revert(key, undefined);
      else this.#acked.delete(key);
    }
    return { push, rejected };
  }

  /** Versions the agent has confirmed, by `type/name`. */
  acked(): ReadonlyMap<string, string> {
    return this.#acked;
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  #take(nonce: string): PendingPush<M> | undefined {
    const push = this.#pending.get(nonce);
    if (push !== undefined) this.#pending.delete(nonce);
    return push;
  }

  // The agent kept what it had before; unless a later push already moved the view on.
  #revert(key: string, sentVersion: string | undefined): void {
    if (sentVersion !== undefined && this.#view.get(key) !== sentVersion) return;
    if (sentVersion === undefined && this.#view.has(key)) return;
    const kept = this.#acked.get(key);
    if (kept === undefined) this.#view.delete(key);
    else this.#view.set(key, kept);
  }
}
