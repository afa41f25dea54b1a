// A same-node connection whose kernel pair was adopted (kernel-splice.ts): its bytes are the
// kernel's, its descriptors the addon's, and what is left of it in JavaScript while it idles
// is this one object: no net.Socket, no suspended serve path, no closure, no timer. It does what
// splice() does for a kernel pair, on the watch's events instead of socket events:
// - a FIN from one side becomes shutdown(SHUT_WR) on the other once the kernel has flushed
//   what it moved that way; the connection is over when both FINs have passed ('closed');
// - a reset or error on one side resets the other (downstream_reset / upstream_reset);
// - the registry's signal (policy re-check, drain deadline, destroy) resets both ('aborted');
// - once one direction has ended, the other is reset after halfClosedIdleMs without a byte
//   ('idle_timeout'), watched by one sweep per listener (HalfClosedSweep), not a timer each.
// Whatever way it ends, the pair is closed (its map entries forgotten), the endpoint's and the
// Service pool's holds are released, and the record is written once, through HandedOver.

import type { ByteSource } from './contracts.ts';
import type { AdoptedKernelPair, KernelPairOwner, PairSide } from './kernel-splice.ts';
import type { HandedOver } from './listener.ts';
import { flagsForSplice } from './splice-flags.ts';
import type { SpliceOutcome } from './splice.ts';

/** What the connection holds until it ends (an endpoint's load, a Service's connection permit). */
export interface Hold {
  release(): void;
}

const FLUSH_POLL_MS = 1;
const FLUSH_POLL_SLOW_MS = 20;
const FLUSH_POLLS_FAST = 50;

/** State bits: a FIN came from side 0 / 1; our FIN went out of side 0 / 1; over. */
const FIN0 = 1;
const FIN1 = 2;
const SHUT0 = 4;
const SHUT1 = 8;
const ALL_DONE = FIN0 | FIN1 | SHUT0 | SHUT1;

export class KernelHeldConnection implements KernelPairOwner, ByteSource {
  #pair: AdoptedKernelPair | undefined;
  /** Set by start() once the pair is adopted. */
  #done!: HandedOver;
  readonly #endpoint: Hold;
  readonly #permit: Hold | undefined;
  readonly #sweep: HalfClosedSweep;
  /** What JavaScript had read from and written to the client before the pair. */
  readonly #clientRead: number;
  readonly #clientWritten: number;
  #state = 0;
  #ended = false;
  /** For the half-closed sweep: the bytes moved when it last looked, and when they last changed. */
  lastMoved = 0;
  lastActiveAt = 0;

  private constructor(endpoint: Hold, permit: Hold | undefined, sweep: HalfClosedSweep, clientRead: number, clientWritten: number) {
    this.#endpoint = endpoint;
    this.#permit = permit;
    this.#sweep = sweep;
    this.#clientRead = clientRead;
    this.#clientWritten = clientWritten;
  }

  /**
   * Adopts the pair through `adopt`, then takes the connection over from its handler through
   * `handOver`, and watches the registry's signal. When `adopt` throws nothing is taken and
   * nothing handed over: the handler still owns the connection and its record. The caller
   * destroys its two sockets next.
   */
  static start(
    adopt: (owner: KernelPairOwner) => AdoptedKernelPair, handOver: () => HandedOver, endpoint: Hold, permit: Hold | undefined, sweep: HalfClosedSweep,
    client: ByteSource,
  ): KernelHeldConnection {
    const c = new KernelHeldConnection(endpoint, permit, sweep, client.bytesRead, client.bytesWritten);
    c.#pair = adopt(c);
    c.#done = handOver();
    const signal = c.#done.live.signal;
    if (signal.aborted) c.#end('aborted');
    else signal.addEventListener('abort', c, { once: true });
    return c;
  }

  get bytesRead(): number {
    return this.#clientRead + (this.#pair?.moved(0) ?? 0);
  }

  get bytesWritten(): number {
    return this.#clientWritten + (this.#pair?.moved(1) ?? 0);
  }

  /** Bytes moved both ways so far (the half-closed sweep's activity). */
  moved(): number {
    const p = this.#pair;
    return p === undefined ? 0 : p.moved(0) + p.moved(1);
  }

  /** The registry's signal fired. */
  handleEvent(): void {
    this.#end('aborted');
  }

  kernelEvent(side: PairSide, event: 'fin' | 'reset'): void {
    if (this.#ended) return;
    if (event === 'reset') {
      this.#end(side === 0 ? 'downstream_reset' : 'upstream_reset');
      return;
    }
    const bit = side === 0 ? FIN0 : FIN1;
    if ((this.#state & bit) !== 0) return;
    if ((this.#state & (FIN0 | FIN1)) === 0) this.#sweep.add(this);
    this.#state |= bit;
    this.#passFin(side === 0 ? 1 : 0, 0);
  }

  /** Sends the FIN out of `to` once the kernel has flushed into it what it moved from the other side. */
  #passFin(to: PairSide, polls: number): void {
    const pair = this.#pair;
    if (this.#ended || pair === undefined) return;
    if (!pair.flushed(to)) {
      setTimeout(() => this.#passFin(to, polls + 1), polls < FLUSH_POLLS_FAST ? FLUSH_POLL_MS : FLUSH_POLL_SLOW_MS).unref();
      return;
    }
    pair.shutdownWrite(to);
    this.#state |= to === 0 ? SHUT0 : SHUT1;
    if (this.#state === ALL_DONE) this.#end('closed');
  }

  /** From the sweep. */
  idleTimeout(): void {
    this.#end('idle_timeout');
  }

  #end(outcome: SpliceOutcome): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#sweep.delete(this);
    this.#done.live.signal.removeEventListener('abort', this);
    const pair = this.#pair;
    if (pair !== undefined) {
      pair.moved(0); // the last counts, before the entries go
      pair.moved(1);
      pair.close(outcome !== 'closed');
    }
    this.#endpoint.release();
    this.#permit?.release();
    this.#done.end(flagsForSplice({ outcome }));
  }
}

/**
 * The half-closed idle watch of many kernel-held connections: one unref'd timer, running only
 * while some connection is half closed, that resets the ones without a byte for idleMs.
 */
export class HalfClosedSweep {
  readonly #idleMs: number;
  readonly #now: () => number;
  readonly #members = new Set<KernelHeldConnection>();
  #timer: NodeJS.Timeout | undefined;

  constructor(idleMs: number, now: () => number = () => performance.now()) {
    this.#idleMs = idleMs;
    this.#now = now;
  }

  get size(): number {
    return this.#members.size;
  }

  add(c: KernelHeldConnection): void {
    c.lastMoved = c.moved();
    c.lastActiveAt = this.#now();
    this.#members.add(c);
    if (this.#timer === undefined) {
      // A connection times out between idleMs and idleMs plus one period.
      const period = Math.max(5, Math.min(1000, Math.floor(this.#idleMs / 4)));
      this.#timer = setInterval(() => this.#sweep(), period);
      this.#timer.unref();
    }
  }

  delete(c: KernelHeldConnection): void {
    if (!this.#members.delete(c) || this.#members.size > 0) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #sweep(): void {
    const now = this.#now();
    for (const c of [...this.#members]) {
      const moved = c.moved();
      if (moved !== c.lastMoved) {
        c.lastMoved = moved;
        c.lastActiveAt = now;
      } else if (now - c.lastActiveAt >= this.#idleMs) c.idleTimeout();
    }
  }
}
