// The contract every config source implements: a directory of YAML files, the Kubernetes
// API, or a test double. A source delivers complete snapshots of raw objects (validation
// is the model's job, see model/load.ts) plus the problems only the source can see
// (unreadable files, YAML syntax, an API kind that cannot be listed).

import type { ManifestProblem } from '../../model/manifests.ts';
import type { RawObject } from '../../model/types.ts';

export type SnapshotListener = (objects: readonly RawObject[], problems: readonly ManifestProblem[]) => void;

export interface ConfigSource {
  /** Delivers the first complete snapshot before resolving, then one snapshot per change (debounced). */
  start(onSnapshot: SnapshotListener): Promise<void>;
  /** Stops watching; no snapshot is delivered after it resolves. Safe to call twice. */
  close(): Promise<void>;
}

/** The logging a source needs; a pino logger fits. */
export interface SourceLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export const silentLogger: SourceLogger = Object.freeze({ info: () => {}, warn: () => {} });
