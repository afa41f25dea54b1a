// What the control plane pushes: opaque versioned resources. The control module does not
// know resource kinds; the app supplies them (from src/model's nodeResources) and the
// agent's validator judges them.

import { createHash } from 'node:crypto';
import { encodeResource } from './wire-encoding.ts';

export interface ControlResource {
  readonly type: string;
  /** Unique within its type. */
  readonly name: string;
  /** Equal content, equal version (the model uses a content hash). */
  readonly version: string;
  /** Plain JSON data. */
  readonly body: unknown;
  /**
   * Optional room (one per resource object) where the server keeps the resource's wire
   * encoding once made: cheaper than a lookup table for hundreds of thousands of resources.
   */
  readonly wire?: { encoded?: Uint8Array };
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
 * (key, version), shared by every node that holds it), however many agents receive it: the
 * JSON body, and the protobuf `Resource` message responses are assembled from
 * (wire-encoding.ts). The encoding goes when the resource does.
 */
export class WireEncoder {
  /** For resources without room of their own (`wire`). */
  readonly #encoded = new WeakMap<ControlResource, Buffer>();

  /** The encoded `Resource` message. */
  encode(r: ControlResource): Buffer {
    const room = r.wire;
    if (room !== undefined) {
      room.encoded ??= this.#encode(r);
      return room.encoded as Buffer;
    }
    let buf = this.#encoded.get(r);
    if (buf === undefined) {
      buf = this.#encode(r);
      this.#encoded.set(r, buf);
    }
    return buf;
  }

  #encode(r: ControlResource): Buffer {
    return encodeResource({ type: r.type, name: r.name, version: r.version, body: Buffer.from(JSON.stringify(r.body) ?? 'null') });
  }

  /** Bytes the resource takes in a response. */
  size(r: ControlResource): number {
    return this.encode(r).length + 4;
  }
}
