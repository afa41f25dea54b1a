// What both ends of the tunnel do with a session whose peer vanished. A peer agent killed
// (kill -9, OOM, node crash) leaves a TCP FIN or RST, and no GOAWAY. Node then either ends
// every stream of the session as if each had received END_STREAM (a FIN), or closes the
// session while streams with writes waiting on flow control stay open for ever (an RST). Either
// way the streams can never finish, so the session is destroyed when its socket reaches EOF,
// and every stream still open when the socket or the session closes is destroyed with an
// error: the splice then resets its pod socket and records the connection.

import type { Http2Session, Http2Stream } from 'node:http2';

import { ProxyErrors, proxyError } from './errors.ts';

/** One listener's or one pool's sessions and their open streams. */
export class SessionGuard {
  readonly #streams = new WeakMap<Http2Session, Set<Http2Stream>>();

  /** Watches a new session (`what` names it in errors). */
  watch(session: Http2Session, what: string): void {
    const open = new Set<Http2Stream>();
    this.#streams.set(session, open);
    const socket = session.socket as { once?: (event: 'end' | 'close', f: () => void) => unknown } | undefined;
    socket?.once?.('end', () => {
      if (!session.destroyed) session.destroy(proxyError(ProxyErrors.TUNNEL_BROKEN, `${what}: the peer closed the connection without ending its streams`));
    });
    const orphaned = (): void => {
      for (const stream of open) {
        if (!stream.destroyed) stream.destroy(proxyError(ProxyErrors.TUNNEL_BROKEN, `${what}: the connection closed under the stream`));
      }
      open.clear();
    };
    // The socket's close, not only the session's: a session with writes stuck on flow control
    // may never finish closing once its socket is gone.
    socket?.once?.('close', orphaned);
    session.once('close', orphaned);
  }

  /** Tracks a stream of a watched session until it closes. */
  track(stream: Http2Stream): void {
    const session = stream.session;
    const open = session === undefined ? undefined : this.#streams.get(session);
    if (open === undefined) return;
    open.add(stream);
    stream.once('close', () => open.delete(stream));
  }
}
