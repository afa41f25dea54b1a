// What both ends of the tunnel do with a session whose peer vanished. A peer agent killed
// (kill -9, OOM, node crash) leaves a TCP FIN or nothing, and no GOAWAY: Node then ends every
// stream of the session as if each had received END_STREAM, and keeps the session open while
// writes wait for flow-control windows that will never open again. The streams can never
// finish, so the session is destroyed at once: each stream closes with an error, and the
// splice resets its pod socket and records the connection.

import type { Http2Session } from 'node:http2';

import { ProxyErrors, proxyError } from './errors.ts';

/** Destroys `session` when its socket reaches EOF (`what` names it in the error). */
export function endSessionOnEof(session: Http2Session, what: string): void {
  const socket = session.socket as { once?: (event: 'end', f: () => void) => unknown } | undefined;
  socket?.once?.('end', () => {
    if (!session.destroyed) session.destroy(proxyError(ProxyErrors.TUNNEL_BROKEN, `${what}: the peer closed the connection without ending its streams`));
  });
}
