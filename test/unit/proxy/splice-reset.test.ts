// resetSide on a socket whose FIN is on its way: libuv refuses to reset a handle that is
// shutting down (uv_tcp_close_reset: EINVAL) and Node then never emits 'close', so a splice
// waiting for it would hang (seen when a tunnel stream was reset right after its FIN was
// passed to the pod). It must still close.

import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';

import { resetSide } from '../../../src/proxy/splice.ts';

test('resetSide closes a socket whose shutdown is in progress', async (t) => {
  let peer: Socket | undefined;
  const server = createServer({ allowHalfOpen: true }, (s) => {
    peer = s;
    s.on('error', () => undefined);
    s.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    peer?.destroy();
    server.close();
  });
  const port = (server.address() as { port: number }).port;
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  s.on('error', () => undefined);
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.end();
  // One turn: the shutdown request is issued, its completion not yet seen.
  await new Promise<void>((r) => process.nextTick(r));
  assert.equal(s.writableFinished, false, 'caught the shutdown in flight');
  const closed = new Promise<string>((resolve) => s.once('close', () => resolve('closed')));
  resetSide(s);
  const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('no close event'), 2000).unref());
  assert.equal(await Promise.race([closed, timeout]), 'closed');
});
