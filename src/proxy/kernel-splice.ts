// The same-node kernel splice as the proxy sees it: two connected TCP sockets handed to the
// kernel, which moves each one's incoming bytes out of the other (bpf/splice.bpf.c), so the
// bytes of an authorized opaque connection between two pods of this node never reach
// JavaScript. The proxy still owns everything else: the FIN, resets, the idle watch, policy
// re-checks (a reset closes both sockets, which takes them out of the kernel's map) and the
// record, whose byte counts come from the kernel. Declared here, by its consumer; the app
// provides it over the native addon (src/app/kernel-splicer.ts).

import type { Socket } from 'node:net';

import type { ByteSource } from './contracts.ts';

/** Pairs sockets in the kernel. */
export interface KernelSplicer {
  /**
   * Moves what the kernel has queued for `from` into `to`'s send queue without a trip through
   * JavaScript (peek, send what `to` takes, consume exactly that). Needed before pairing a
   * socket JavaScript has read from: the segment at the head of its queue may be partly read,
   * and the kernel splice forwards a segment whole (tcp_read_skb ignores how much of it was
   * consumed), repeating bytes the proxy already passed on. Throws when either socket fails.
   */
  drainInto(from: Socket, to: Socket): KernelDrain;
  /**
   * Hands the two sockets' bytes to the kernel. Throws when it cannot (the map is full, a
   * socket closed meanwhile): the caller splices in user space instead.
   */
  pair(a: Socket, b: Socket): KernelPair;
}

/** What one drainInto() moved. */
export interface KernelDrain {
  readonly moved: number;
  /** `from`'s queue is empty (but for a FIN): no segment in it is partly read. */
  readonly complete: boolean;
}

/** One pair of sockets the kernel is moving bytes between. */
export interface KernelPair {
  /** Bytes the kernel moved from `from` (one of the pair) out of the other one, so far. */
  moved(from: Socket): number;
  /** Bytes `socket` took into its send queue since it was paired, the kernel's and ours. */
  queued(socket: Socket): number;
  /**
   * The kernel keeps one direction's bytes for JavaScript: a segment came while its peer was
   * not in the kernel's map (the sockets enter it one after the other, or the peer is gone),
   * and the rest follow it there, in order. splice() moves them; the pair cannot be adopted.
   */
  passing(): boolean;
  /** Forgets the pair once both sockets are done; moved() keeps its last answers. Safe twice. */
  release(): void;
  /**
   * Takes the pair's two descriptors out of JavaScript (see AdoptedKernelPair); the caller
   * destroys both net.Sockets right after, and this pair is released. Throws when the
   * descriptors cannot be taken, or the kernel keeps bytes for JavaScript (passing()): nothing
   * changed then, and splice() can still watch the pair.
   * `drained`: what drainInto() moved out of each side before the pair was made (a DrainedPair
   * passes it on).
   */
  adopt(owner: KernelPairOwner, drained?: readonly [fromA: number, fromB: number]): AdoptedKernelPair;
}

/** Side 0 is the first socket given to pair() (the client), side 1 the second. */
export type PairSide = 0 | 1;

/** Told what happened to an adopted pair's sockets. */
export interface KernelPairOwner {
  /** `side` got a FIN ('fin', once), or was reset or failed ('reset'). */
  kernelEvent(side: PairSide, event: 'fin' | 'reset'): void;
}

/**
 * A kernel pair held outside JavaScript: no net.Socket, no stream state, no closure per
 * connection while it idles; the addon watches both descriptors and tells the owner of a FIN
 * or a reset, which passes it on here.
 */
export interface AdoptedKernelPair {
  /** Bytes moved out of `from` into the other side so far (the kernel's and the drains'). */
  moved(from: PairSide): number;
  /** Every byte moved from the other side has entered `to`'s send queue (a FIN may follow). */
  flushed(to: PairSide): boolean;
  /** Passes a FIN on: shutdown(SHUT_WR) of `side`. */
  shutdownWrite(side: PairSide): void;
  /** Closes both descriptors (an RST each when `reset`) and forgets the pair; moved() keeps its last answers. Safe twice. */
  close(reset: boolean): void;
}

/** Why a same-node connection is spliced in user space after all (a small fixed vocabulary). */
export type KernelFallback = 'buffered' | 'refused';

/**
 * Pairs the sockets when nothing is buffered in JavaScript on either side: bytes already read
 * there would have to be written ahead of what the kernel moves, which it cannot order.
 */
export function tryKernelPair(splicer: KernelSplicer, client: Socket, upstream: Socket): KernelPair | KernelFallback {
  if (client.readableLength > 0 || upstream.readableLength > 0) return 'buffered';
  try {
    return splicer.pair(client, upstream);
  } catch {
    return 'refused';
  }
}

const HANDOVER_ROUNDS = 8;
const HANDOVER_RETRY_MS = 1;

/**
 * Pairs the sockets after writing out what already reached JavaScript (the protocol sniff
 * reads a client's first bytes and puts them back; a server may have greeted already): each
 * side's buffered bytes go to the other; then, for a side JavaScript has read from, what its
 * kernel queue holds goes straight across (drainInto), so no partly read segment is left for
 * the kernel to repeat; and the pair is made in the same tick as the check that nothing more
 * arrived, so the kernel's bytes follow ours. Gives up ('buffered') when bytes keep arriving
 * in JavaScript or the other side stays full. Never rejects.
 */
export async function handOverToKernel(splicer: KernelSplicer, client: Socket, upstream: Socket): Promise<KernelHandover> {
  const drained = new Drained(client);
  const result = await handOver(splicer, client, upstream, drained);
  if (typeof result !== 'string') return { result, bytes: kernelByteSource(client, upstream, result) };
  return { result, bytes: drained.none() ? client : new DrainedBytes(client, drained) };
}

/** How a handover ended, and the client-facing byte counts to record either way. */
export interface KernelHandover {
  /** The pair, or why user space splices after all. */
  readonly result: KernelPair | KernelFallback;
  /** Include what drainInto() moved, which neither Node's counts nor the pair's hold. */
  readonly bytes: ByteSource;
}

async function handOver(splicer: KernelSplicer, client: Socket, upstream: Socket, drained: Drained): Promise<KernelPair | KernelFallback> {
  for (let round = 0; round < HANDOVER_ROUNDS; round++) {
    if (client.destroyed || upstream.destroyed) return 'buffered';
    if (client.readableLength > 0 || upstream.readableLength > 0) {
      await Promise.all([flushBuffered(client, upstream), flushBuffered(upstream, client)]);
      continue;
    }
    // Our own writes must be in the kernel before drainInto adds to the same send queue.
    if (client.writableLength === 0 && upstream.writableLength === 0) {
      let emptied: boolean;
      try {
        emptied = drained.drain(splicer, client, upstream) && drained.drain(splicer, upstream, client);
      } catch {
        resetBoth(client, upstream); // a side failed mid-handover: nothing may look complete
        return 'buffered';
      }
      if (emptied) {
        const pair = tryKernelPair(splicer, client, upstream);
        return typeof pair === 'string' || drained.none() ? pair : new DrainedPair(pair, client, drained);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, HANDOVER_RETRY_MS));
  }
  return 'buffered';
}

/** Bytes drainInto() moved out of each side before the pair was made. */
class Drained {
  readonly #client: Socket;
  fromClient = 0;
  fromUpstream = 0;

  constructor(client: Socket) {
    this.#client = client;
  }

  /** True when `from`'s queue holds no partly read segment (now, in this tick). */
  drain(splicer: KernelSplicer, from: Socket, to: Socket): boolean {
    const isClient = from === this.#client;
    const before = isClient ? this.fromClient : this.fromUpstream;
    // Never read (by Node or by drainInto): its queue holds whole segments only.
    if (from.bytesRead === 0 && before === 0) return true;
    const r = splicer.drainInto(from, to);
    if (isClient) this.fromClient += r.moved;
    else this.fromUpstream += r.moved;
    return r.complete;
  }

  none(): boolean {
    return this.fromClient === 0 && this.fromUpstream === 0;
  }
}

/** A pair whose counts start where the handover's drains did: they are the kernel's bytes too. */
class DrainedPair implements KernelPair {
  readonly #pair: KernelPair;
  readonly #client: Socket;
  readonly #drained: Drained;

  constructor(pair: KernelPair, client: Socket, drained: Drained) {
    this.#pair = pair;
    this.#client = client;
    this.#drained = drained;
  }

  moved(from: Socket): number {
    return this.#pair.moved(from) + (from === this.#client ? this.#drained.fromClient : this.#drained.fromUpstream);
  }

  queued(socket: Socket): number {
    return this.#pair.queued(socket) + (socket === this.#client ? this.#drained.fromUpstream : this.#drained.fromClient);
  }

  passing(): boolean {
    return this.#pair.passing();
  }

  release(): void {
    this.#pair.release();
  }

  adopt(owner: KernelPairOwner): AdoptedKernelPair {
    return this.#pair.adopt(owner, [this.#drained.fromClient, this.#drained.fromUpstream]);
  }
}

/** The client-facing counts of a connection spliced in user space after drains. */
class DrainedBytes implements ByteSource {
  readonly #client: Socket;
  readonly #drained: Drained;

  constructor(client: Socket, drained: Drained) {
    this.#client = client;
    this.#drained = drained;
  }

  get bytesRead(): number {
    return this.#client.bytesRead + this.#drained.fromClient;
  }

  get bytesWritten(): number {
    return this.#client.bytesWritten + this.#drained.fromUpstream;
  }
}

function resetBoth(a: Socket, b: Socket): void {
  for (const s of [a, b]) {
    try {
      s.resetAndDestroy();
    } catch {
      s.destroy();
    }
  }
}

/** Writes what `from` holds in JavaScript to `to`; resolves once the kernel has it (or a side failed). */
function flushBuffered(from: Socket, to: Socket): Promise<void> {
  const chunk = from.readableLength > 0 ? (from.read() as Buffer | null) : null;
  if (chunk === null) return Promise.resolve();
  return new Promise((resolve) => {
    to.write(chunk, () => resolve());
  });
}

/**
 * The client-facing byte counts of a kernel-spliced connection: what JavaScript moved (bytes
 * that reached it before the pair took hold) plus what the kernel moved.
 */
export function kernelByteSource(client: Socket, upstream: Socket, pair: KernelPair): ByteSource {
  return {
    get bytesRead(): number {
      return client.bytesRead + pair.moved(client);
    },
    get bytesWritten(): number {
      return client.bytesWritten + pair.moved(upstream);
    },
  };
}

const FLUSH_POLL_MS = 1;

/**
 * Calls `then` once every byte the kernel moved out of `from` has entered `to`'s send queue,
 * so the FIN passed on after it follows the last byte. The kernel sends redirected bytes from
 * a work queue, a little after the segment (and the FIN behind it) arrived. Stops polling if
 * `to` is destroyed meanwhile (its close is handled by the splice). `writtenAtPair`: what
 * JavaScript had written to `to` when the pair was made (queued() counts our writes since).
 */
export function afterKernelFlush(pair: KernelPair, from: Socket, to: Socket, writtenAtPair: number, then: () => void): void {
  const check = (): void => {
    if (to.destroyed) return;
    const ours = to.bytesWritten - writtenAtPair;
    if (to.writableLength === 0 && pair.queued(to) >= pair.moved(from) + ours) {
      then();
      return;
    }
    setTimeout(check, FLUSH_POLL_MS).unref();
  };
  check();
}
