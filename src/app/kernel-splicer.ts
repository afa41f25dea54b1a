// The proxy's KernelSplicer over the native addon: one worker opens the pinned kernel-splice
// maps once (src/redirect/kernel-splice.ts loaded them) and pairs sockets through them. An
// adopted pair's descriptors are held by the addon's epoll watch (native/kernel_watch.c), one
// per splicer, opened when the first pair is adopted.

import type { Socket } from 'node:net';
import { nativeAddon, socketFdOf, type KernelWatchHandle, type NativeAddon } from '../core/native-addon.ts';
import type { AdoptedKernelPair, KernelDrain, KernelPair, KernelPairOwner, KernelSplicer, PairSide } from '../proxy/index.ts';
import type { KernelSplicePins } from '../redirect/index.ts';

export class NativeKernelSplicer implements KernelSplicer {
  readonly #addon: NativeAddon;
  readonly #socks: number;
  readonly #pairs: number;
  #closed = false;
  #watch: KernelWatchHandle | undefined;
  /** Adopted pairs by id, for the watch's events. */
  readonly #adopted = new Map<number, AdoptedNativePair>();
  #nextId = 1;

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
    return new NativeKernelPair(this, [a, ca, fa, baseA], [b, cb, fb, baseB]);
  }

  /** Adopted pairs not closed yet. */
  get adopted(): number {
    return this.#adopted.size;
  }

  /**
   * Closes the map descriptors (pairs still open keep the maps alive in the kernel) and stops
   * the watch; adopted pairs still open are reset first (nothing would tell their owners of a FIN).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of [...this.#adopted.values()]) p.fail();
    if (this.#watch !== undefined) this.#addon.kernelWatchStop(this.#watch);
    this.#addon.closeFd(this.#socks);
    this.#addon.closeFd(this.#pairs);
  }

  /** @internal For NativeKernelPair. */
  get addon(): NativeAddon {
    return this.#addon;
  }

  /** @internal For NativeKernelPair. */
  get pairsFd(): number {
    return this.#pairs;
  }

  /** @internal Takes both descriptors into the watch; their duplicates. */
  watch(fa: number, fb: number, make: (id: number, fds: readonly [number, number]) => AdoptedNativePair): AdoptedNativePair {
    if (this.#closed) throw new Error('the kernel splicer is closed');
    this.#watch ??= this.#addon.kernelWatchOpen((id, side, events) => this.#adopted.get(id)?.event(side === 0 ? 0 : 1, events));
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0x7fff_ffff ? 1 : this.#nextId + 1;
    const fds = this.#addon.kernelWatchAdd(this.#watch, id, fa, fb);
    const p = make(id, fds);
    this.#adopted.set(id, p);
    return p;
  }

  /** @internal For AdoptedNativePair.close. */
  unwatch(id: number, fd: number, reset: boolean): void {
    this.#adopted.delete(id);
    if (this.#watch !== undefined) this.#addon.kernelWatchClose(this.#watch, fd, reset);
  }
}

type Side = readonly [socket: Socket, cookie: bigint, fd: number, queuedBase: number];

class NativeKernelPair implements KernelPair {
  readonly #splicer: NativeKernelSplicer;
  readonly #addon: NativeAddon;
  readonly #pairs: number;
  readonly #a: Side;
  readonly #b: Side;
  /** Last answers of moved() per side, kept once the entries are gone. */
  #movedA = 0;
  #movedB = 0;
  #released = false;

  constructor(splicer: NativeKernelSplicer, a: Side, b: Side) {
    this.#splicer = splicer;
    this.#addon = splicer.addon;
    this.#pairs = splicer.pairsFd;
    this.#a = a;
    this.#b = b;
  }

  adopt(owner: KernelPairOwner, drained: readonly [number, number] = [0, 0]): AdoptedKernelPair {
    if (this.#released) throw new Error('the kernel pair is released');
    // Nothing would read the bytes the kernel keeps for JavaScript: they would wait forever.
    if (this.passing()) throw new Error('the kernel keeps bytes of this pair for JavaScript');
    const p = this.#splicer.watch(this.#a[2], this.#b[2], (id, fds) => new AdoptedNativePair(this.#splicer, id, owner, this.#a, this.#b, fds, drained));
    // The entries now belong to the adopted pair; this one answers nothing more.
    this.#released = true;
    return p;
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

  passing(): boolean {
    return !this.#released && (this.#addon.kernelSplicePassing(this.#pairs, this.#a[1]) || this.#addon.kernelSplicePassing(this.#pairs, this.#b[1]));
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

/** The epoll bits the watch reports (sys/epoll.h). */
const EPOLLERR = 0x008;
const EPOLLHUP = 0x010;
const EPOLLRDHUP = 0x2000;

/**
 * One adopted pair: its cookies, its duplicated descriptors and what it has seen, numbers only
 * (no socket, no closure, no array: each connection pays for this object alone), so an idle
 * spliced connection costs this object and its owner.
 */
class AdoptedNativePair implements AdoptedKernelPair {
  readonly #splicer: NativeKernelSplicer;
  readonly #id: number;
  readonly #owner: KernelPairOwner;
  readonly #cookieA: bigint;
  readonly #cookieB: bigint;
  readonly #fdA: number;
  readonly #fdB: number;
  readonly #queuedBaseA: number;
  readonly #queuedBaseB: number;
  readonly #drainedA: number;
  readonly #drainedB: number;
  #movedA = 0;
  #movedB = 0;
  /** Bit per side: a FIN was seen (1, 2), our FIN was sent (4, 8). */
  #state = 0;
  #closed = false;

  constructor(splicer: NativeKernelSplicer, id: number, owner: KernelPairOwner, a: Side, b: Side, fds: readonly [number, number], drained: readonly [number, number]) {
    this.#splicer = splicer;
    this.#id = id;
    this.#owner = owner;
    this.#cookieA = a[1];
    this.#cookieB = b[1];
    this.#queuedBaseA = a[3];
    this.#queuedBaseB = b[3];
    this.#fdA = fds[0];
    this.#fdB = fds[1];
    this.#drainedA = drained[0];
    this.#drainedB = drained[1];
  }

  /** @internal From the watch. */
  event(side: PairSide, events: number): void {
    if (this.#closed) return;
    const finBit = side === 0 ? 1 : 2;
    const shutBit = side === 0 ? 4 : 8;
    if ((events & EPOLLERR) !== 0) {
      this.#owner.kernelEvent(side, 'reset');
      return;
    }
    if ((events & EPOLLRDHUP) !== 0 && (this.#state & finBit) === 0) {
      this.#state |= finBit;
      this.#owner.kernelEvent(side, 'fin');
    }
    // Closed both ways without an error: only clean when its FIN came and ours went (our FIN
    // may still be waiting on the flush: a HUP then means the peer is gone).
    if ((events & EPOLLHUP) !== 0 && !this.#closed && (this.#state & (finBit | shutBit)) !== (finBit | shutBit)) {
      this.#owner.kernelEvent(side, 'reset');
    }
  }

  /** Resets it and tells the owner (the splicer is closing). */
  fail(): void {
    if (!this.#closed) this.#owner.kernelEvent(0, 'reset');
    this.close(true);
  }

  moved(from: PairSide): number {
    if (!this.#closed) {
      const n = this.#splicer.addon.kernelSpliceBytes(this.#splicer.pairsFd, from === 0 ? this.#cookieA : this.#cookieB);
      if (n >= 0) {
        if (from === 0) this.#movedA = n;
        else this.#movedB = n;
      }
    }
    return from === 0 ? this.#movedA + this.#drainedA : this.#movedB + this.#drainedB;
  }

  flushed(to: PairSide): boolean {
    if (this.#closed) return true;
    let queued: number;
    try {
      queued = to === 0 ? this.#splicer.addon.tcpQueuedTotal(this.#fdA) - this.#queuedBaseA : this.#splicer.addon.tcpQueuedTotal(this.#fdB) - this.#queuedBaseB;
    } catch {
      return true; // the socket is going away: nothing is left to wait for before its FIN
    }
    // What the kernel moved toward `to` (the drains went into its queue before the base was read).
    return queued >= (to === 0 ? this.moved(1) - this.#drainedB : this.moved(0) - this.#drainedA);
  }

  shutdownWrite(side: PairSide): void {
    if (this.#closed) return;
    this.#state |= side === 0 ? 4 : 8;
    this.#splicer.addon.kernelWatchShutdown(side === 0 ? this.#fdA : this.#fdB);
  }

  close(reset: boolean): void {
    if (this.#closed) return;
    this.moved(0);
    this.moved(1);
    this.#closed = true;
    const addon = this.#splicer.addon;
    addon.kernelSpliceForget(this.#splicer.pairsFd, this.#cookieA);
    addon.kernelSpliceForget(this.#splicer.pairsFd, this.#cookieB);
    this.#splicer.unwatch(this.#id, this.#fdA, reset);
    this.#splicer.unwatch(this.#id, this.#fdB, reset);
  }
}
