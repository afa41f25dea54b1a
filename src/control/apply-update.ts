// The agent's two-phase apply of one delta: decode and validate every resource aside (a bad
// one is refused alone, with its key and reason), then build the next config once. The
// caller swaps it in with one assignment, so readers never see half an update. Pure.

import type { WireResource } from './protocol.ts';
import { resourceKey, type ControlResource, type ResourceRejection } from './resource.ts';

/** Judges one resource: undefined when it is fine, else why not (one line, names the field). */
export type ResourceValidator = (resource: ControlResource) => string | undefined;

export interface DeltaUpdate {
  readonly resources: readonly WireResource[];
  /** `type/name` keys. */
  readonly removed: readonly string[];
}

export interface AppliedDelta {
  /** The config after the update; the same object as `current` when nothing changed. */
  readonly next: ReadonlyMap<string, ControlResource>;
  readonly rejected: readonly ResourceRejection[];
  /** Keys added, replaced or removed. */
  readonly changedKeys: readonly string[];
}

function decode(wire: WireResource): ControlResource | string {
  if (typeof wire.type !== 'string' || wire.type === '' || wire.type.includes('/')) return `type ${JSON.stringify(wire.type)} must be a non-empty name without "/"`;
  if (typeof wire.name !== 'string' || wire.name === '') return 'name must not be empty';
  if (typeof wire.version !== 'string' || wire.version === '') return 'version must not be empty';
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(wire.body).toString('utf8'));
  } catch (err: unknown) {
    return `body is not JSON: ${err instanceof Error ? err.message : String(err)}`;
  }
  return Object.freeze({ type: wire.type, name: wire.name, version: wire.version, body });
}

export function applyDelta(current: ReadonlyMap<string, ControlResource>, update: DeltaUpdate, validate: ResourceValidator): AppliedDelta {
  const rejected: ResourceRejection[] = [];
  const accepted = new Map<string, ControlResource>();
  const seen = new Set<string>();
  for (const wire of update.resources) {
    const key = resourceKey({ type: String(wire.type), name: String(wire.name) });
    const version = String(wire.version);
    if (seen.has(key)) {
      rejected.push({ key, version, message: 'the resource appears more than once in one update' });
      accepted.delete(key);
      continue;
    }
    seen.add(key);
    const decoded = decode(wire);
    let problem = typeof decoded === 'string' ? decoded : undefined;
    if (problem === undefined) {
      try {
        problem = validate(decoded as ControlResource);
      } catch (err: unknown) {
        problem = `the validator failed: ${err instanceof Error ? err.message : String(err)}`;
      }
    }
    if (problem !== undefined) rejected.push({ key, version, message: problem });
    else accepted.set(key, decoded as ControlResource);
  }
  const changedKeys: string[] = [];
  const removals = update.removed.filter((key) => current.has(key) && !accepted.has(key));
  const upserts = [...accepted].filter(([key, r]) => current.get(key)?.version !== r.version);
  if (removals.length === 0 && upserts.length === 0) return { next: current, rejected, changedKeys };
  const next = new Map(current);
  for (const key of removals) {
    next.delete(key);
    changedKeys.push(key);
  }
  for (const [key, r] of upserts) {
    next.set(key, r);
    changedKeys.push(key);
  }
  return { next, rejected, changedKeys };
}
