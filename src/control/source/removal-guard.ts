// The decision that keeps a torn manifest directory from emptying the mesh: a change that
// would remove a file's every object (`> file`, a half-synced checkout, a deleted file), or
// shrink the mesh by more than a set share of its objects at once, is held back for a grace
// period before it applies. An edit that renames objects is not a removal. Pure, over object
// keys per file; the directory source does the I/O and the logging.

export interface RemovalGuardOptions {
  /** How long a mass removal is held back. 0 applies it at once. */
  readonly graceMs: number;
  /** Share of all applied objects (0..1) that one reload may remove without being held. */
  readonly maxShare: number;
}

export const DEFAULT_REMOVAL_GUARD: RemovalGuardOptions = Object.freeze({ graceMs: 10_000, maxShare: 0.5 });

/** One file's object keys: what the mesh has now, and what the file says now ([] once deleted). */
export interface FileKeys {
  readonly applied: readonly string[];
  readonly next: readonly string[];
}

export interface RemovalDecision {
  /** Files whose change is held back (they keep their applied objects), with when the hold began. */
  readonly held: ReadonlyMap<string, number>;
  /** Files whose held removal applies now, its grace period over. */
  readonly released: readonly string[];
  /** How many objects fewer the changes held would leave (for the log). */
  readonly removedHeld: number;
  /** Objects the mesh has now, all files together. */
  readonly appliedTotal: number;
}

/** How many objects fewer the file gives: a rename or an edit is not a removal. */
function shrinkOf(f: FileKeys): number {
  return Math.max(0, new Set(f.applied).size - new Set(f.next).size);
}

/**
 * `previous` is the result of the last call (when each hold began). A file is held while its
 * change is a mass removal and its grace period is not over; a file whose change stopped
 * removing (it was written back) is no longer held.
 */
export function guardRemovals(
  files: ReadonlyMap<string, FileKeys>,
  previous: ReadonlyMap<string, number>,
  now: number,
  options: RemovalGuardOptions,
): RemovalDecision {
  let appliedTotal = 0;
  let removedTotal = 0;
  const removed = new Map<string, number>();
  for (const [path, f] of files) {
    appliedTotal += f.applied.length;
    const n = shrinkOf(f);
    if (n > 0) removed.set(path, n);
    removedTotal += n;
  }
  const massive = removedTotal > options.maxShare * appliedTotal;
  const held = new Map<string, number>();
  const released: string[] = [];
  let removedHeld = 0;
  for (const [path, n] of removed) {
    const f = files.get(path) as FileKeys;
    if (!massive && f.next.length > 0) continue;
    const since = previous.get(path) ?? now;
    if (now - since >= options.graceMs) {
      released.push(path);
      continue;
    }
    held.set(path, since);
    removedHeld += n;
  }
  return { held, released, removedHeld, appliedTotal };
}
