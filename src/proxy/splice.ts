// Copies bytes both ways between the downstream and the upstream of a proxied connection,
// each a TCP socket or an HTTP/2 CONNECT stream:
// - backpressure: a side that cannot take more pauses the other (no unbounded buffering);
// - half-close: a FIN (socket 'end', stream END_STREAM) is passed on as a FIN, and the other
//   direction keeps flowing until it ends too;
// - resets: an error or reset on one side resets the other (RST for a socket, RST_STREAM
//   CONNECT_ERROR for a stream), as RFC 9113 section 8.5 asks for CONNECT tunnels; a splice
//   the proxy itself ends (the signal: a policy re-check, a drain deadline) resets its sockets
//   and cancels its streams (RST_STREAM CANCEL: no TCP error to report, and neither end of
//   the stream then builds an error object, a third of a stream's cost when thousands end);
// - a stream that "ends" because its tunnel session died (Node ends every stream of a
//   session whose socket hit EOF) is a reset, not a FIN: a truncated transfer must not look
//   complete to the pod;
// - half-closed and idle: once one direction has ended, the other is reset after
//   `halfClosedIdleMs` without a byte (a peer that never finishes must not pin sockets);
// - a crash looks like a crash: sockets are set to reset on close (SO_LINGER 0, through the
//   injected SocketCloser) for as long as bytes may be in flight, and back to FIN once both
//   directions have ended cleanly, so an agent that dies leaves its clients an RST.
// It resolves once both sides are closed, so no socket or stream outlives it.

import { Socket } from 'node:net';
import { constants as h2, type Http2Stream } from 'node:http2';

import { afterKernelFlush, type KernelPair } from './kernel-splice.ts';

export type SpliceSide = Socket | Http2Stream;

export type SpliceOutcome =
  /** Both directions ended with a FIN. */
  | 'closed'
  /** The downstream side errored or was reset; the upstream was reset in turn. */
  | 'downstream_reset'
  /** The upstream side errored or was reset; the downstream was reset in turn. */
  | 'upstream_reset'
  /** The signal fired; both sides were reset. */
  | 'aborted'
  /** One direction had ended and the other sat idle past halfClosedIdleMs; both were reset. */
  | 'idle_timeout';

/**
 * How a proxied socket closes (native SO_LINGER in production; absent in tests that do not
 * care). Declared here, by its consumer.
 */
export interface SocketCloser {
  /** From now on, closing this socket, or the process dying, resets the connection (RST). */
  resetOnClose(socket: Socket): void;
  /** Closing it sends FIN again: both directions ended cleanly, nothing is in flight. */
  finOnClose(socket: Socket): void;
}

export interface SpliceOptions {
  readonly closer?: SocketCloser;
  /** Once one direction has ended, reset after this long without a byte the other way. Default 5 min. */
  readonly halfClosedIdleMs?: number;
  /**
   * The two sockets are paired in the kernel (same node, kernel-splice.ts): it moves their
   * bytes, so a FIN is passed on only once what it moved has entered the other socket, and
   * what it moves counts as activity for the half-closed watch.
   */
  readonly kernel?: KernelPair;
}

export const DEFAULT_HALF_CLOSED_IDLE_MS = 5 * 60_000;

export interface SpliceResult {
  readonly outcome: SpliceOutcome;
  /** The first error either side reported, if any. */
  readonly error?: unknown;
}

/** Reset a side: RST for a socket, RST_STREAM (CONNECT_ERROR unless told) for a stream. Safe to repeat. */
export function resetSide(side: SpliceSide, streamCode: number = h2.NGHTTP2_CONNECT_ERROR): void {
  if (side.destroyed) return;
  if (side instanceof Socket) {
    // While our FIN (shutdown) is in flight libuv refuses to reset (uv_tcp_close_reset: EINVAL)
    // and Node then never closes the handle nor emits 'close': plain destroy is the only safe
    // end there. Once the shutdown has completed a reset works again (and a peer still writing
    // must learn of it).
    if (side.writableEnded && !side.writableFinished) {
      side.destroy();
      return;
    }
    try {
      side.resetAndDestroy();
    } catch {
      side.destroy();
    }
    return;
  }
  // Destroying a stream whose code is not NO_ERROR makes an ERR_HTTP2_STREAM_ERROR, and the
  // stream's destroy formats its stack at once: nobody reads it, and when thousands of
  // connections end together (a policy re-check) it was a quarter of each one's cost.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    if (side.closed) {
      side.destroy();
      return;
    }
    // close() first ends the writable side, which queues END_STREAM ahead of the RST_STREAM:
    // the peer would see a clean FIN before the reset. Skip that shutdown frame.
    if (!side.writableEnded) side._final = (callback): void => callback();
    side.close(streamCode);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function closedCleanly(side: SpliceSide, hadError: boolean): boolean {
  if (hadError) return false;
  // Both FINs must have passed; anything short of that is a reset to pass on.
  const bothEnded = side.readableEnded && side.writableFinished;
  return side instanceof Socket ? bothEnded : bothEnded && side.rstCode === h2.NGHTTP2_NO_ERROR;
}

// A stream delivers a tunnel's 16 KiB DATA frames several per tick; corking the socket for the
// rest of the tick makes them one writev instead of one write syscall each. Backpressure then
// counts what the cork holds: pause once that passes CORKED_LIMIT.
const CORKED_LIMIT = 256 * 1024;

/**
 * A stream's 'end' is END_STREAM only if its session is still alive once the event has run
 * its course: Node also ends the streams of a session whose socket hit EOF (a peer agent
 * killed), and then destroys them with a non-zero code.
 */
function streamEndedCleanly(stream: Http2Stream): boolean {
  // A stream closed since (both ways done) no longer has a session; its code tells.
  if (stream.destroyed) return stream.rstCode === h2.NGHTTP2_NO_ERROR;
  const session = stream.session;
  return session !== undefined && !session.destroyed;
}

function pump(from: SpliceSide, to: SpliceSide, onData: () => void, onEnd: () => void, broken: () => void, kernel?: KernelPair): void {
  if (to instanceof Socket && !(from instanceof Socket)) {
    let corked = false;
    const uncork = (): void => {
      corked = false;
      to.uncork();
    };
    from.on('data', (chunk: Buffer) => {
      if (!corked) {
        corked = true;
        to.cork();
        process.nextTick(uncork);
      }
      onData();
      if (!to.write(chunk) && to.writableLength >= CORKED_LIMIT) from.pause();
    });
  } else {
    from.on('data', (chunk: Buffer) => {
      onData();
      if (!to.write(chunk)) from.pause();
    });
  }
  to.on('drain', () => from.resume());
  const passFin = (): void => {
    if (!to.destroyed && !to.writableEnded) to.end();
    onEnd();
  };
  const writtenAtPair = to instanceof Socket ? to.bytesWritten : 0;
  const onFromEnd = (): void => {
    if (from instanceof Socket) {
      if (kernel !== undefined && to instanceof Socket) {
        onEnd(); // the half-closed watch starts now, the FIN goes once the kernel has flushed
        afterKernelFlush(kernel, from, to, writtenAtPair, passFin);
      } else passFin();
      return;
    }
    // Decided after the session has had its say (its close follows the streams' end).
    setImmediate(() => {
      if (streamEndedCleanly(from)) passFin();
      else broken();
    });
  };
  from.on('end', onFromEnd);
  // A side read before the splice (the protocol sniff) may have seen its FIN already.
  if (from.readableEnded) onFromEnd();
}

/** Turns lingering back off once both directions of a socket have ended cleanly. */
function finOnCleanEnd(socket: Socket, closer: SocketCloser): void {
  const check = (): void => {
    if (socket.readableEnded && socket.writableFinished && !socket.destroyed) closer.finOnClose(socket);
  };
  // Both run before Node's auto-destroy closes the socket (it follows the second of them).
  socket.once('end', check);
  socket.once('finish', check);
}

/**
 * Splices `downstream` (faces the client) and `upstream` (faces the server) until both are
 * closed. Never rejects. Sockets must be created with allowHalfOpen for half-close to work.
 */
export function splice(downstream: SpliceSide, upstream: SpliceSide, signal?: AbortSignal, options: SpliceOptions = {}): Promise<SpliceResult> {
  return new Promise<SpliceResult>((resolve) => {
    let outcome: SpliceOutcome | undefined;
    let firstError: unknown;
    let open = 2;
    const idleMs = options.halfClosedIdleMs ?? DEFAULT_HALF_CLOSED_IDLE_MS;
    // Half-close watch: armed when the first direction ends; any byte since counts as activity.
    let halfClosed = false;
    let lastByte = 0;
    let idleTimer: NodeJS.Timeout | undefined;
    const onData = (): void => {
      if (halfClosed) lastByte = performance.now();
    };
    // Bytes the kernel moves never reach onData: the half-closed watch asks it instead.
    const kernel = options.kernel;
    let kernelMoved = 0;
    const idleCheck = (): void => {
      if (kernel !== undefined && downstream instanceof Socket && upstream instanceof Socket) {
        const moved = kernel.moved(downstream) + kernel.moved(upstream);
        if (moved !== kernelMoved) {
          kernelMoved = moved;
          lastByte = performance.now();
        }
      }
      const quiet = performance.now() - lastByte;
      if (quiet >= idleMs) fail('idle_timeout');
      else {
        idleTimer = setTimeout(idleCheck, idleMs - quiet);
        idleTimer.unref();
      }
    };
    const onEnd = (): void => {
      if (halfClosed) return;
      halfClosed = true;
      lastByte = performance.now();
      if (kernel !== undefined && downstream instanceof Socket && upstream instanceof Socket) kernelMoved = kernel.moved(downstream) + kernel.moved(upstream);
      idleTimer = setTimeout(idleCheck, idleMs);
      idleTimer.unref();
    };

    const onAbort = (): void => fail('aborted');
    const settle = (): void => {
      if (--open > 0) return;
      clearTimeout(idleTimer);
      signal?.removeEventListener('abort', onAbort);
      const result = { outcome: outcome ?? 'closed' };
      resolve(firstError === undefined ? result : { ...result, error: firstError });
    };
    function fail(which: SpliceOutcome): void {
      outcome ??= which;
      const code = outcome === 'aborted' ? h2.NGHTTP2_CANCEL : h2.NGHTTP2_CONNECT_ERROR;
      resetSide(downstream, code);
      resetSide(upstream, code);
    }

    const watch = (side: SpliceSide, failure: SpliceOutcome): void => {
      let errored = false;
      side.on('error', (err: unknown) => {
        errored = true;
        firstError ??= err;
      });
      // A side destroyed before we got here may already have emitted 'close': count it as gone.
      if (side.destroyed) {
        fail(failure);
        settle();
        return;
      }
      side.once('close', () => {
        if (!closedCleanly(side, errored)) fail(failure);
        settle();
      });
    };

    watch(downstream, 'downstream_reset');
    watch(upstream, 'upstream_reset');
    if (outcome !== undefined) return;
    const closer = options.closer;
    if (closer !== undefined) {
      for (const side of [downstream, upstream]) {
        if (!(side instanceof Socket)) continue;
        closer.resetOnClose(side);
        finOnCleanEnd(side, closer);
      }
    }
    pump(downstream, upstream, onData, onEnd, () => fail('downstream_reset'), kernel);
    pump(upstream, downstream, onData, onEnd, () => fail('upstream_reset'), kernel);
    if (signal?.aborted === true) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
