// Ending an HTTP/2 session on purpose (a revoked certificate) so that the peer sees resets,
// not a clean end of data.

import type { Http2Session } from 'node:http2';

/**
 * Ends a session whose streams were just reset: close() lets those RST_STREAM frames go out
 * (destroy() would drop them, and the peer would read a clean end); destroyed if the peer
 * does not finish within a second.
 */
export function endSession(session: Http2Session): void {
  session.close();
  const force = setTimeout(() => session.destroy(), 1000);
  force.unref();
  session.once('close', () => clearTimeout(force));
}
