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
 * Encodes resources for the wire once per (key, version), however many agents receive
 * them and however many nodes' slices carry an equal copy. Entries live for two snapshot
 * generations: `rotate()` at each snapshot drops what the one before last used alone.
 */
export class WireEncoder {
  #current = new Map<string, WireResource>();
  #previous = new Map<string, WireResource>();

  encode(r: ControlResource): WireResource {
    const id = `${resourceKey(r)}\0${r.version}`;
    let wire = this.#current.get(id);
    if (wire === undefined) {
      wire = this.#previous.get(id) ?? { type: r.type, name: r.name, version: r.version, body: Buffer.from(JSON.stringify(r.body) ?? 'null') };
      this.#current.set(id, wire);
    }
    return wire;
  }

  rotate(): void {
    this.#previous = this.#current;
    this.#current = new Map();
  }
}
