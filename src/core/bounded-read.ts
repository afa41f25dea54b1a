// Reading a text file only when it is small enough: the size is checked on the open file
// before anything is read, and the read stops one byte past the limit, so a file that grows
// meanwhile (or a FIFO, or /dev/zero behind a symlink) cannot make us hold more than that.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

export type BoundedText =
  | { readonly text: string; readonly bytes: number }
  /** `bytes` is what the file holds (or limit + 1 when it grew past the limit while read). */
  | { readonly tooLarge: true; readonly bytes: number };

/** Reads chunks through `read` into a buffer that grows up to maxBytes + 1. */
class Collector {
  readonly #max: number;
  buffer: Buffer;
  length = 0;

  constructor(size: number, maxBytes: number) {
    this.#max = maxBytes;
    this.buffer = Buffer.allocUnsafe(Math.min(maxBytes + 1, size + 1));
  }

  /** Room for the next read, or undefined once past the limit. */
  room(): { offset: number; length: number } | undefined {
    if (this.length > this.#max) return undefined;
    if (this.length === this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.#max + 1, this.buffer.length * 2 + 1));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    return { offset: this.length, length: this.buffer.length - this.length };
  }

  result(): BoundedText {
    if (this.length > this.#max) return { tooLarge: true, bytes: this.length };
    return { text: this.buffer.toString('utf8', 0, this.length), bytes: this.length };
  }
}

export async function readTextUpTo(path: string, maxBytes: number): Promise<BoundedText> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size > maxBytes) return { tooLarge: true, bytes: size };
    const c = new Collector(size, maxBytes);
    for (let room = c.room(); room !== undefined; room = c.room()) {
      const { bytesRead } = await handle.read(c.buffer, room.offset, room.length, null);
      if (bytesRead === 0) break;
      c.length += bytesRead;
    }
    return c.result();
  } finally {
    await handle.close();
  }
}

export function readTextUpToSync(path: string, maxBytes: number): BoundedText {
  const fd = openSync(path, 'r');
  try {
    const { size } = fstatSync(fd);
    if (size > maxBytes) return { tooLarge: true, bytes: size };
    const c = new Collector(size, maxBytes);
    for (let room = c.room(); room !== undefined; room = c.room()) {
      const n = readSync(fd, c.buffer, room.offset, room.length, null);
      if (n === 0) break;
      c.length += n;
    }
    return c.result();
  } finally {
    closeSync(fd);
  }
}
