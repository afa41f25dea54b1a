// What both ends of the tunnel do with a session whose peer vanished. A peer agent killed
// (kill -9, OOM, node crash) leaves a TCP FIN or RST, and no GOAWAY. Node then either ends
// every stream of the session as if each had received END_STREAM (a FIN), or closes the
// session while streams with writes waiting on flow control stay open for ever (an RST). Either
// way the streams can never finish, so the session is destroyed when its socket reaches EOF,
// and every stream still open when the socket or the session closes is destroyed with an
// error: the splice then resets its pod socket and records the connection.
// The kernel's word is not always heard: a socket reset while Node neither reads nor writes it
// (HTTP/2 stops reading while a write is stuck on a full send buffer) is closed in the kernel
// and nothing tells the process. So a session carrying streams is also PINGed, and one whose
// PING goes unanswered for `pingTimeoutMs` is destroyed like one whose socket ended.

import type { Http2Session, Http2Stream } from 'node:http2';

import { ProxyErrors, proxyError } from './errors.ts';

export interface SessionLiveness {
  /** How often a session with open streams is PINGed. Default 2 s. */
  readonly pingIntervalMs: number;
  /** A PING unanswered this long means the peer is gone. Default 8 s. */
  readonly pingTimeoutMs: number;
}

export const DEFAULT_SESSION_LIVENESS: SessionLiveness = Object.freeze({ pingIntervalMs: 2_000, pingTimeoutMs: 8_000 });

/** One listener's or one pool's sessions and their open streams. */
export class SessionGuard {
  readonly #streams = new WeakMap<Http2Session, Set<Http2Stream>>();
  readonly #liveness: SessionLiveness;

  constructor(liveness: Partial<SessionLiveness> = {}) {
    this.#liveness = { ...DEFAULT_SESSION_LIVENESS, ...liveness };
  }

  /** Watches a new session (`what` names it in errors). */
  watch(session: Http2Session, what: string): void {
    const open = new Set<Http2Stream>();
    this.#streams.set(session, open);
    const broken = (detail: string): void => {
      if (!session.destroyed) session.destroy(proxyError(ProxyErrors.TUNNEL_BROKEN, `${what}: ${detail}`));
    };
    const socket = session.socket as { once?: (event: 'end' | 'close', f: () => void) => unknown } | undefined;
    socket?.once?.('end', () => broken('the peer closed the connection without ending its streams'));
    const pinger = this.#pinger(session, open, broken);
    const orphaned = (): void => {
      clearInterval(pinger);
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

  /** PINGs the session while it carries streams; destroys it once a PING goes unanswered too long. */
  #pinger(session: Http2Session, open: ReadonlySet<Http2Stream>, broken: (detail: string) => void): NodeJS.Timeout {
    const { pingIntervalMs, pingTimeoutMs } = this.#liveness;
    let sentAt: number | undefined;
    const timer = setInterval(() => {
      if (session.destroyed) {
        clearInterval(timer);
        return;
      }
      if (sentAt !== undefined) {
        if (performance.now() - sentAt >= pingTimeoutMs) broken(`no answer to a PING within ${pingTimeoutMs} ms`);
        return;
      }
      if (open.size === 0) return;
      sentAt = performance.now();
      try {
        session.ping((err) => {
          if (err !== null && !session.destroyed) broken(`PING failed: ${err.message}`);
          sentAt = undefined;
        });
      } catch {
        // Closing already (ping throws on a session being torn down).
        sentAt = undefined;
      }
    }, pingIntervalMs);
    timer.unref();
    return timer;
  }
}
