// What the server pushes from: every node's resources now, and which of them changed since
// an earlier generation (with what they were then), so that each agent is sent the
// difference from what it holds without the server keeping a copy of it per agent. The app
// passes the model's SliceIndex, which keeps that history as objects change; SnapshotView
// adapts a plain "resources of a node in a snapshot" function to it (tests, small uses).

import type { ControlResource } from './resource.ts';
import { resourceKey } from './resource.ts';

/** The server's view of what every node should hold. */
export interface ResourceView {
  /** Increases whenever some node's resources change. */
  readonly generation: number;
  /** The resource `key` (`type/name`) for the node now; undefined when the node should not hold it. */
  current(node: string, key: string): ControlResource | undefined;
  /**
   * Every resource the node should hold (any order), each as it is when the iteration
   * reaches it: the server reads a big node's in parts, over several generations.
   */
  entries(node: string): Iterable<readonly [string, ControlResource]>;
  /**
   * Every key whose resource for the node may differ between generation `since` and now,
   * with the resource it was then (undefined: none), in key order. Undefined when `since`
   * is older than the history kept: the node's agent must then be resynced from what it
   * says it holds. Nodes with the same changes may be given the same map.
   */
  changesSince(node: string, since: number): ReadonlyMap<string, ControlResource | undefined> | undefined;
  /**
   * Optional, so that first syncs share their bytes: the node's resources as the entries every
   * node with `shared` holds (sharedEntries) and its own, which win over shared ones of the
   * same key, less the shared keys it must not hold (`hidden`). Undefined: read entries().
   */
  layers?(node: string): NodeLayers | undefined;
  /** Every shared entry now (see layers), the same for every node that holds them. */
  sharedEntries?(): ReadonlyMap<string, ControlResource>;
}

/** One node's resources in two layers (ResourceView.layers). */
export interface NodeLayers {
  /** Whether the node holds the shared entries. */
  readonly shared: boolean;
  readonly own: Iterable<readonly [string, ControlResource]>;
  /** Shared keys the node does not hold. */
  readonly hidden: readonly string[];
}

/** The resources one node needs from a snapshot. */
export type ResourcesFor<S> = (snapshot: S, node: string) => ReadonlyMap<string, ControlResource> | Iterable<ControlResource>;

interface SnapshotGeneration {
  readonly generation: number;
  /** node -> key -> resource before. */
  readonly changes: Map<string, Map<string, ControlResource | undefined>>;
}

/**
 * A ResourceView over whole snapshots: each snapshot computes the resources of every node
 * that has been asked about (one that fails keeps its previous resources) and logs the
 * difference. O(nodes x resources) per snapshot, as a snapshot API must be.
 */
export class SnapshotView<S> implements ResourceView {
  readonly #resourcesFor: ResourcesFor<S>;
  readonly #onError: (node: string, err: unknown) => void;
  readonly #historyLimit: number;
  readonly #nodes = new Map<string, Map<string, ControlResource>>();
  readonly #log: SnapshotGeneration[] = [];
  #snapshot: S | undefined;
  #generation = 0;
  #horizon = 0;

  constructor(resourcesFor: ResourcesFor<S>, onError: (node: string, err: unknown) => void, historyLimit = 1_000) {
    this.#resourcesFor = resourcesFor;
    this.#onError = onError;
    this.#historyLimit = historyLimit;
  }

  get generation(): number {
    return this.#generation;
  }

  get hasSnapshot(): boolean {
    return this.#snapshot !== undefined;
  }

  set(snapshot: S): void {
    this.#snapshot = snapshot;
    const changes = new Map<string, Map<string, ControlResource | undefined>>();
    for (const [node, before] of this.#nodes) {
      const after = this.#compute(node);
      if (after === undefined) continue; // failed: keeps what it had
      const diff = new Map<string, ControlResource | undefined>();
      for (const [k, r] of after) if (before.get(k)?.version !== r.version) diff.set(k, before.get(k));
      for (const [k, r] of before) if (!after.has(k)) diff.set(k, r);
      if (diff.size > 0) changes.set(node, diff);
      this.#nodes.set(node, after);
    }
    this.#generation++;
    this.#log.push({ generation: this.#generation, changes });
    while (this.#log.length > this.#historyLimit) this.#horizon = (this.#log.shift() as SnapshotGeneration).generation;
  }

  current(node: string, key: string): ControlResource | undefined {
    return this.#of(node).get(key);
  }

  *entries(node: string): Iterable<readonly [string, ControlResource]> {
    // A snapshot replaces the node's map: read each key afresh (what changed meanwhile is in the history).
    for (const k of this.#of(node).keys()) {
      const r = this.current(node, k);
      if (r !== undefined) yield [k, r];
    }
  }

  changesSince(node: string, since: number): ReadonlyMap<string, ControlResource | undefined> | undefined {
    if (since < this.#horizon || since > this.#generation) return undefined;
    const out = new Map<string, ControlResource | undefined>();
    for (const g of this.#log) {
      if (g.generation <= since) continue;
      for (const [k, r] of g.changes.get(node) ?? []) if (!out.has(k)) out.set(k, r);
    }
    return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  #of(node: string): ReadonlyMap<string, ControlResource> {
    let m = this.#nodes.get(node);
    if (m === undefined) {
      // First asked about now: its resources start here (nobody can hold an older version).
      m = this.#compute(node) ?? new Map<string, ControlResource>();
      this.#nodes.set(node, m);
    }
    return m;
  }

  #compute(node: string): Map<string, ControlResource> | undefined {
    if (this.#snapshot === undefined) return new Map();
    try {
      const given = this.#resourcesFor(this.#snapshot, node);
      const out = new Map<string, ControlResource>();
      for (const r of given instanceof Map ? (given as ReadonlyMap<string, ControlResource>).values() : (given as Iterable<ControlResource>)) out.set(resourceKey(r), r);
      return out;
    } catch (err: unknown) {
      this.#onError(node, err);
      return undefined;
    }
  }
}
