// What the control plane pushes: opaque versioned resources. The control module does not
// know resource kinds; the app supplies them (from src/model's nodeResources) and the
// agent's validator judges them.

import { createHash } from 'node:crypto';
import type { WireResource } from './protocol.ts';

export interface ControlResource {
  readonly type: string;
  /** Unique within its type. */
  readonly name: string;
  /** Equal content, equal version (the model uses a content hash). */
  readonly version: string;
  /** Plain JSON data. */
  readonly body: unknown;
}

/** A resource refused by an agent, as the server records it and the agent reports it. */
export interface ResourceRejection {
  /** `type/name` */
  readonly key: string;
  readonly version: string;
  readonly message: string;
}

export function resourceKey(r: { readonly type: string; readonly name: string }): string {
  return `${r.type}/${r.name}`;
}

/** A hash of every key and version of a set: the "system version" of one node's config. */
export function systemVersion(versions: Iterable<readonly [string, string]>): string {
  const hash = createHash('sha256');
  for (const [key, version] of [...versions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) hash.update(`${key}\0${version}\n`);
  return hash.digest('hex').slice(0, 16);
}

/**
 * Encodes resources for the wire once per resource object (the model gives one object per
 * (key, version), shared by every node that holds it), however many agents receive it; the
 * encoding goes when the resource does.
 */
export class WireEncoder {
  readonly #wire = new WeakMap<ControlResource, WireResource>();

  encode(r: ControlResource): WireResource {
    let wire = this.#wire.get(r);
    if (wire === undefined) {
      wire = { type: r.type, name: r.name, version: r.version, body: Buffer.from(JSON.stringify(r.body) ?? 'null') };
      this.#wire.set(r, wire);
    }
    return wire;
  }

  /** Bytes the resource takes in a response (body, type, name, version). */
  size(r: ControlResource): number {
    const w = this.encode(r);
    return w.body.length + w.type.length + w.name.length + w.version.length + 8;
  }
}
