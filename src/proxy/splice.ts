// Copies bytes both ways between the downstream and the upstream of a proxied connection,
// each a TCP socket or an HTTP/2 CONNECT stream:
// - backpressure: a side that cannot take more pauses the other (no unbounded buffering);
// - half-close: a FIN (socket 'end', stream END_STREAM) is passed on as a FIN, and the other
//   direction keeps flowing until it ends too;
// - resets: an error or reset on one side resets the other (RST for a socket, RST_STREAM
//   CONNECT_ERROR for a stream), as RFC 9113 section 8.5 asks for CONNECT tunnels.
// It resolves once both sides are closed, so no socket or stream outlives it.

import { Socket } from 'node:net';
import { constants as h2, type Http2Stream } from 'node:http2';

export type SpliceSide = Socket | Http2Stream;

export type SpliceOutcome =
  /** Both directions ended with a FIN. */
  | 'closed'
  /** The downstream side errored or was reset; the upstream was reset in turn. */
  | 'downstream_reset'
  /** The upstream side errored or was reset; the downstream was reset in turn. */
  | 'upstream_reset'
  /** The signal fired; both sides were reset. */
  | 'aborted';

export interface SpliceResult {
  readonly outcome: SpliceOutcome;
  /** The first error either side reported, if any. */
  readonly error?: unknown;
}

/** Reset a side: RST for a socket, RST_STREAM(CONNECT_ERROR) for a stream. Safe to repeat. */
export function resetSide(side: SpliceSide): void {
  if (side.destroyed) return;
  if (side instanceof Socket) {
    // After our FIN (shutdown) libuv refuses to reset (uv_tcp_close_reset: EINVAL) and Node then
    // never closes the handle nor emits 'close': plain destroy is the only safe end there.
    if (side.writableEnded) {
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
  if (side.closed) {
    side.destroy();
    return;
  }
  // close() first ends the writable side, which queues END_STREAM ahead of the RST_STREAM:
  // the peer would see a clean FIN before the reset. Skip that shutdown frame.
  if (!side.writableEnded) side._final = (callback): void => callback();
  side.close(h2.NGHTTP2_CONNECT_ERROR);
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

function pump(from: SpliceSide, to: SpliceSide): void {
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
      if (!to.write(chunk) && to.writableLength >= CORKED_LIMIT) from.pause();
    });
  } else {
    from.on('data', (chunk: Buffer) => {
      if (!to.write(chunk)) from.pause();
    });
  }
  to.on('drain', () => from.resume());
  const passEnd = (): void => {
    if (!to.destroyed && !to.writableEnded) to.end();
  };
  from.on('end', passEnd);
  // A side read before the splice (the protocol sniff) may have seen its FIN already.
  if (from.readableEnded) passEnd();
}

/**
 * Splices `downstream` (faces the client) and `upstream` (faces the server) until both are
 * closed. Never rejects. Sockets must be created with allowHalfOpen for half-close to work.
 */
export function splice(downstream: SpliceSide, upstream: SpliceSide, signal?: AbortSignal): Promise<SpliceResult> {
  return new Promise<SpliceResult>((resolve) => {
    let outcome: SpliceOutcome | undefined;
    let firstError: unknown;
    let open = 2;

    const onAbort = (): void => fail('aborted');
    const settle = (): void => {
      if (--open > 0) return;
      signal?.removeEventListener('abort', onAbort);
      const result = { outcome: outcome ?? 'closed' };
      resolve(firstError === undefined ? result : { ...result, error: firstError });
    };
    function fail(which: SpliceOutcome): void {
      outcome ??= which;
      resetSide(downstream);
      resetSide(upstream);
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
    pump(downstream, upstream);
    pump(upstream, downstream);
    if (signal?.aborted === true) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
