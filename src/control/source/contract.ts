// The contract every config source implements: a directory of YAML files, the Kubernetes
// API, or a test double. A source delivers complete snapshots of raw objects (validation
// is the model's job, see model/load.ts) plus the problems only the source can see
// (unreadable files, YAML syntax, an API kind that cannot be listed). A source that can
// also says what changed (startChanges), which is what the control plane uses: a change
// then costs what it touches, not the size of the cluster.

import type { ManifestProblem } from '../../model/manifests.ts';
import type { RawObject } from '../../model/types.ts';

export type SnapshotListener = (objects: readonly RawObject[], problems: readonly ManifestProblem[]) => void;

/** What changed at a source since its last delivery. */
export interface SourceChange {
  /** Objects new or changed (every object, in the first delivery). */
  readonly upserted: readonly RawObject[];
  /** Objects gone, as they were last delivered (their kind, metadata and source identify them). */
  readonly removed: readonly RawObject[];
  /** Every problem the source sees now (it replaces the previous list). */
  readonly problems: readonly ManifestProblem[];
}

export type ChangeListener = (change: SourceChange) => void;

export interface ConfigSource {
  /** Delivers the first complete snapshot before resolving, then one snapshot per change (debounced). */
  start(onSnapshot: SnapshotListener): Promise<void>;
  /**
   * Like start, but delivers what changed instead of whole snapshots (the first delivery
   * holds every object). Optional: the control plane diffs snapshots itself without it.
   */
  startChanges?(onChange: ChangeListener): Promise<void>;
  /** Stops watching; no snapshot is delivered after it resolves. Safe to call twice. */
  close(): Promise<void>;
}

/** The logging a source needs; a pino logger fits. */
export interface SourceLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export const silentLogger: SourceLogger = Object.freeze({ info: () => {}, warn: () => {} });
