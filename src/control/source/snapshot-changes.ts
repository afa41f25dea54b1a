// For a source that only delivers whole snapshots: what changed between one snapshot and
// the next, by source position (file, document, object name) and object identity. Sources keep the
// same object for what did not change, so a comparison by reference finds the changes; an
// object rebuilt equal costs a revalidation downstream, not a wrong answer. O(the snapshot).

import type { RawObject } from '../../model/types.ts';
import type { ChangeListener, SnapshotListener, SourceChange } from './contract.ts';

/** Source position and object name: a Kubernetes source gives every object of a kind one position. */
function position(o: RawObject): string {
  const md = o.body.metadata;
  const m = typeof md === 'object' && md !== null ? md as Record<string, unknown> : {};
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  return `${o.source.file}\0${o.source.doc}\0${o.kind}/${str(m.namespace)}/${str(m.name)}`;
}

/** Turns a ChangeListener into the SnapshotListener a snapshot-only source calls. */
export function snapshotChanges(onChange: ChangeListener): SnapshotListener {
  let held = new Map<string, RawObject>();
  return (objects, problems) => {
    const next = new Map<string, RawObject>();
    const upserted: RawObject[] = [];
    const removed: RawObject[] = [];
    for (const o of objects) {
      const at = position(o);
      next.set(at, o);
      if (held.get(at) !== o) upserted.push(o);
    }
    for (const [at, o] of held) if (!next.has(at)) removed.push(o);
    held = next;
    const change: SourceChange = { upserted, removed, problems };
    onChange(change);
  };
}
