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
   * Hands the two sockets' bytes to the kernel. Throws when it cannot (the map is full, a
   * socket closed meanwhile): the caller splices in user space instead.
   */
  pair(a: Socket, b: Socket): KernelPair;
}

/** One pair of sockets the kernel is moving bytes between. */
export interface KernelPair {
  /** Bytes the kernel moved from `from` (one of the pair) out of the other one, so far. */
  moved(from: Socket): number;
  /** Bytes `socket` took into its send queue since it was paired, the kernel's and ours. */
  queued(socket: Socket): number;
  /** Forgets the pair once both sockets are done; moved() keeps its last answers. Safe twice. */
  release(): void;
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

const HANDOVER_ROUNDS = 4;

/**
 * Pairs the sockets after writing out what already reached JavaScript (the protocol sniff
 * reads a client's first bytes and puts them back; a server may have greeted already): each
 * side's buffered bytes go to the other, and the pair is made in the same tick as the check
 * that nothing more arrived, so the kernel's bytes follow ours. Gives up ('buffered') when
 * bytes keep arriving in JavaScript. Never rejects.
 */
export async function handOverToKernel(splicer: KernelSplicer, client: Socket, upstream: Socket): Promise<KernelPair | KernelFallback> {
  for (let round = 0; round < HANDOVER_ROUNDS; round++) {
    if (client.readableLength === 0 && upstream.readableLength === 0) return tryKernelPair(splicer, client, upstream);
    if (client.destroyed || upstream.destroyed) return 'buffered';
    await Promise.all([flushBuffered(client, upstream), flushBuffered(upstream, client)]);
  }
  return client.readableLength === 0 && upstream.readableLength === 0 ? tryKernelPair(splicer, client, upstream) : 'buffered';
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
