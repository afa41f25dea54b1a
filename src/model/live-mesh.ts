// The control plane's model, kept up to date one change at a time: raw objects as a source
// delivers them -> validated objects (ObjectStore) -> resolved mesh (LiveResolver, into a
// MeshIndex) -> every node's resources with their history (SliceIndex). At any moment it
// holds what loadMesh + nodeResources would compute from the same objects (the tests check
// that), but a change costs what it touches, not the size of the cluster.

import type { ManifestProblem } from './manifests.ts';
import type { MeshState } from './state.ts';
import { checkedTrustDomain } from './state.ts';
import { ObjectStore, type ObjectChanges } from './object-store.ts';
import { LiveResolver } from './live-resolver.ts';
import { SliceIndex } from './slice-index.ts';

export interface LiveMeshOptions {
  readonly trustDomain?: string;
  /** Check core kinds against the Kubernetes OpenAPI schemas (default true, as loadMesh). */
  readonly kubernetesSchema?: boolean;
  /** See SliceIndexOptions.historyLimit. */
  readonly historyLimit?: number;
}

export interface LiveMeshUpdate {
  /** Objects whose accepted version changed. */
  readonly objects: number;
  readonly workloads: number;
  readonly services: number;
  /** The slice generation after the update (unchanged when no node's resources changed). */
  readonly generation: number;
}

export class LiveMesh {
  readonly #store: ObjectStore;
  readonly #resolver: LiveResolver;
  readonly slices: SliceIndex;

  constructor(options: LiveMeshOptions = {}) {
    this.#store = new ObjectStore({ kubernetesSchema: options.kubernetesSchema ?? true });
    this.#resolver = new LiveResolver(checkedTrustDomain(options.trustDomain));
    this.slices = new SliceIndex(this.#resolver.index, options.historyLimit === undefined ? {} : { historyLimit: options.historyLimit });
  }

  /** The resolved mesh now (updated in place by apply). */
  get state(): MeshState {
    return this.#resolver.index;
  }

  apply(changes: ObjectChanges): LiveMeshUpdate {
    const parsed = this.#store.apply(changes);
    const content = parsed.length === 0 ? undefined : this.#resolver.apply(parsed);
    if (content !== undefined) this.slices.apply(content);
    return {
      objects: parsed.length,
      workloads: content?.workloads.size ?? 0,
      services: content?.services.size ?? 0,
      generation: this.slices.generation,
    };
  }

  /** Every current problem of the objects held. */
  problems(): ManifestProblem[] {
    return this.#store.problems();
  }

  /** Names of the Namespaces held, sorted. */
  namespaces(): string[] {
    return this.#resolver.namespaceNames();
  }

  /** Objects held per kind, and the resolved workloads and services. */
  counts(): Record<string, number> {
    return { ...this.#resolver.counts(), workloads: this.#resolver.index.workloadCount, resolvedServices: this.#resolver.index.serviceCount };
  }
}
