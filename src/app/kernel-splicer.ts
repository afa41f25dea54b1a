// The proxy's KernelSplicer over the native addon: one worker opens the pinned kernel-splice
// maps once (src/redirect/kernel-splice.ts loaded them) and pairs sockets through them.

import type { Socket } from 'node:net';
import { nativeAddon, socketFdOf, type NativeAddon } from '../core/native-addon.ts';
import type { KernelDrain, KernelPair, KernelSplicer } from '../proxy/index.ts';
import type { KernelSplicePins } from '../redirect/index.ts';

export class NativeKernelSplicer implements KernelSplicer {
  readonly #addon: NativeAddon;
  readonly #socks: number;
  readonly #pairs: number;
  #closed = false;

  /** Throws when the addon does not load or the pins cannot be opened. */
  constructor(pins: KernelSplicePins, addon: NativeAddon | Error = nativeAddon()) {
    if (addon instanceof Error) throw addon;
    this.#addon = addon;
    this.#socks = addon.bpfObjGet(pins.socks);
    try {
      this.#pairs = addon.bpfObjGet(pins.pairs);
    } catch (err: unknown) {
      addon.closeFd(this.#socks);
      throw err;
    }
  }

  drainInto(from: Socket, to: Socket): KernelDrain {
    const ff = socketFdOf(from);
    const ft = socketFdOf(to);
    if (ff === undefined || ft === undefined) throw new Error('a socket to drain has no descriptor');
    const [moved, complete] = this.#addon.drainInto(ff, ft);
    return { moved, complete };
  }

  pair(a: Socket, b: Socket): KernelPair {
    if (this.#closed) throw new Error('the kernel splicer is closed');
    const fa = socketFdOf(a);
    const fb = socketFdOf(b);
    if (fa === undefined || fb === undefined) throw new Error('a socket of the pair has no descriptor');
    // Before the pair exists: nothing has been redirected yet, so these are the zero points.
    const baseA = this.#addon.tcpQueuedTotal(fa);
    const baseB = this.#addon.tcpQueuedTotal(fb);
    const [ca, cb] = this.#addon.kernelSplicePair(this.#socks, this.#pairs, fa, fb);
    return new NativeKernelPair(this.#addon, this.#pairs, [a, ca, fa, baseA], [b, cb, fb, baseB]);
  }

  /** Closes the map descriptors (pairs still open keep the maps alive in the kernel). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#addon.closeFd(this.#socks);
    this.#addon.closeFd(this.#pairs);
  }
}

type Side = readonly [socket: Socket, cookie: bigint, fd: number, queuedBase: number];

class NativeKernelPair implements KernelPair {
  readonly #addon: NativeAddon;
  readonly #pairs: number;
  readonly #a: Side;
  readonly #b: Side;
  /** Last answers of moved() per side, kept once the entries are gone. */
  #movedA = 0;
  #movedB = 0;
  #released = false;

  constructor(addon: NativeAddon, pairs: number, a: Side, b: Side) {
    this.#addon = addon;
    this.#pairs = pairs;
    this.#a = a;
    this.#b = b;
  }

  moved(from: Socket): number {
    const isA = from === this.#a[0];
    if (!this.#released) {
      const n = this.#addon.kernelSpliceBytes(this.#pairs, (isA ? this.#a : this.#b)[1]);
      if (n >= 0) {
        if (isA) this.#movedA = n;
        else this.#movedB = n;
      }
    }
    return isA ? this.#movedA : this.#movedB;
  }

  queued(socket: Socket): number {
    const side = socket === this.#a[0] ? this.#a : this.#b;
    try {
      return this.#addon.tcpQueuedTotal(side[2]) - side[3];
    } catch {
      // The socket is going away under us: nothing is left to wait for before its FIN.
      return Number.POSITIVE_INFINITY;
    }
  }

  release(): void {
    if (this.#released) return;
    this.moved(this.#a[0]);
    this.moved(this.#b[0]);
    this.#released = true;
    this.#addon.kernelSpliceForget(this.#pairs, this.#a[1]);
    this.#addon.kernelSpliceForget(this.#pairs, this.#b[1]);
  }
}
