// Phase one, one object at a time: the control plane's store of raw objects as the source
// delivers them (added, changed, gone), each validated once when it changes. The rules are
// parseObjects' (they share parseRawObject): one bad object rejects only itself; an object
// that turns invalid keeps its last good version; when two sources define one object
// (two files), the first valid one in source order wins and the others are reported.
// Each apply says which objects' accepted versions changed, for the live resolver.

import { isDeepStrictEqual } from 'node:util';
import type { RawObject, SourceRef } from './types.ts';
import { KEEPING_PREVIOUS, isKind, objectKey, parseRawObject, type Kind, type ManifestProblem, type ParsedObject } from './manifests.ts';
import { isRecord } from './fields.ts';

/**
 * What changed at the source: objects added or changed, and objects gone (as last
 * delivered). An object is identified by its source position (file and document) and its
 * key: a document that now holds another object is the old one removed and the new one
 * upserted. (A Kubernetes source gives every object of a kind one position.)
 */
export interface ObjectChanges {
  readonly upserted: readonly RawObject[];
  readonly removed: readonly RawObject[];
}

/** An object whose accepted version changed; `value` undefined: it is gone. */
export type ParsedChange = { readonly key: string } & {
  readonly [K in Kind]: { readonly kind: K; readonly value: Extract<ParsedObject, { kind: K }>['value'] | undefined }
}[Kind];

interface Candidate {
  readonly raw: RawObject;
  readonly parsed: ParsedObject | undefined;
  readonly problems: readonly ManifestProblem[];
  readonly object: string;
}

interface Accepted {
  readonly parsed: ParsedObject;
}

function sourceId(source: SourceRef): string {
  return `${source.file}\0${source.doc}`;
}

function bySource(a: Candidate, b: Candidate): number {
  const fa = a.raw.source.file;
  const fb = b.raw.source.file;
  if (fa !== fb) return fa < fb ? -1 : 1;
  return a.raw.source.doc - b.raw.source.doc;
}

/** Equal bodies, the API's resourceVersion aside (it moves with every write, read or not). */
function sameBody(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  if (a === b) return true;
  const ma = a.metadata;
  const mb = b.metadata;
  if (!isRecord(ma) || !isRecord(mb) || (ma.resourceVersion === undefined && mb.resourceVersion === undefined)) return isDeepStrictEqual(a, b);
  return isDeepStrictEqual({ ...a, metadata: { ...ma, resourceVersion: undefined } }, { ...b, metadata: { ...mb, resourceVersion: undefined } });
}

function keyOf(raw: RawObject): string | undefined {
  return isKind(raw.kind) && isRecord(raw.body) ? objectKey(raw.kind, raw.body) : undefined;
}

export interface ObjectStoreOptions {
  /** Check core kinds against the Kubernetes OpenAPI schemas too (as parseObjects does by default). */
  readonly kubernetesSchema?: boolean;
}

export class ObjectStore {
  readonly #kubernetesSchema: boolean;
  /** Per object key, every source's version of it. */
  readonly #candidates = new Map<string, Map<string, Candidate>>();
  readonly #accepted = new Map<string, Accepted>();
  /** Problems of objects that have no key (no name, unknown kind), by source position. */
  readonly #unkeyed = new Map<string, readonly ManifestProblem[]>();
  /** Problems per object key (its own, duplicates, kept versions). */
  readonly #problems = new Map<string, readonly ManifestProblem[]>();

  constructor(options: ObjectStoreOptions = {}) {
    this.#kubernetesSchema = options.kubernetesSchema ?? true;
  }

  /** How many objects are accepted. */
  get size(): number {
    return this.#accepted.size;
  }

  /** Takes the source's changes; returns the objects whose accepted version changed, in key order. */
  apply(changes: ObjectChanges): ParsedChange[] {
    const touched = new Set<string>();
    for (const raw of changes.removed) {
      const id = sourceId(raw.source);
      const key = keyOf(raw);
      if (key === undefined) this.#unkeyed.delete(id);
      else if (this.#candidates.get(key)?.delete(id) === true) touched.add(key);
    }
    for (const raw of changes.upserted) {
      const id = sourceId(raw.source);
      const key = keyOf(raw);
      if (key === undefined) {
        this.#unkeyed.set(id, parseRawObject(raw, this.#kubernetesSchema).problems);
        continue;
      }
      let forKey = this.#candidates.get(key);
      if (forKey === undefined) this.#candidates.set(key, (forKey = new Map<string, Candidate>()));
      const existing = forKey.get(id);
      // Sources re-deliver unchanged objects (a rewritten file holds many; an API update that
      // only moved the resourceVersion): validate only what changed.
      if (existing !== undefined && sameBody(existing.raw.body, raw.body)) continue;
      const one = parseRawObject(raw, this.#kubernetesSchema);
      forKey.set(id, { raw, parsed: one.parsed, problems: one.problems, object: one.object });
      touched.add(key);
    }
    const out: ParsedChange[] = [];
    for (const key of [...touched].sort()) {
      const before = this.#accepted.get(key)?.parsed;
      const after = this.#decide(key, before);
      if (after === before) continue;
      const kind = key.slice(0, key.indexOf('/')) as Kind;
      out.push({ key, kind, value: after?.value } as ParsedChange);
    }
    return out;
  }

  /** Every current problem (objects in source order within a key; keys in no particular order). */
  problems(): ManifestProblem[] {
    const out: ManifestProblem[] = [];
    for (const p of this.#unkeyed.values()) out.push(...p);
    for (const p of this.#problems.values()) out.push(...p);
    return out;
  }

  // parseObjects' walk over one key's versions, in source order.
  #decide(key: string, previous: ParsedObject | undefined): ParsedObject | undefined {
    const forKey = this.#candidates.get(key);
    const candidates = forKey === undefined ? [] : [...forKey.values()].sort(bySource);
    if (candidates.length === 0) {
      this.#candidates.delete(key);
      this.#accepted.delete(key);
      this.#problems.delete(key);
      return undefined;
    }
    // parseObjects' rule: the first valid version wins; with none valid, the first one keeps
    // the object's previous version (if any). Either way the rest are problems.
    const problems: ManifestProblem[] = [];
    const firstValid = candidates.find((c) => c.parsed !== undefined);
    let winner: { parsed: ParsedObject; file: string } | undefined;
    candidates.forEach((c, i) => {
      const kept = i === 0 && firstValid === undefined ? previous : undefined;
      const accepted = c.parsed ?? kept;
      if (c.parsed === undefined) {
        const suffix = kept === undefined ? '' : KEEPING_PREVIOUS;
        for (const p of c.problems) problems.push({ ...p, message: p.message + suffix });
      }
      if (accepted === undefined) return;
      if (winner === undefined) winner = { parsed: accepted, file: c.raw.source.file };
      else problems.push({ file: c.raw.source.file, object: c.object, field: 'metadata.name', message: `duplicates the object first defined in ${winner.file}` });
    });
    if (problems.length > 0) this.#problems.set(key, problems);
    else this.#problems.delete(key);
    if (winner === undefined) {
      this.#accepted.delete(key);
      return undefined;
    }
    // The same accepted object as before (a kept version): nothing changed downstream.
    if (winner.parsed === previous) return previous;
    this.#accepted.set(key, { parsed: winner.parsed });
    return winner.parsed;
  }
}
