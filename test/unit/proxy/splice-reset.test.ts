// resetSide on a socket whose FIN is on its way: libuv refuses to reset a handle that is
// shutting down (uv_tcp_close_reset: EINVAL) and Node then never emits 'close', so a splice
// waiting for it would hang (seen when a tunnel stream was reset right after its FIN was
// passed to the pod). It must still close. And the codes a splice resets a stream with: CANCEL
// when the proxy ends it, CONNECT_ERROR when it passes on a TCP reset.

import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { constants as h2constants, connect as h2connect, createServer as createH2Server, type Http2Stream } from 'node:http2';
import { test, type TestContext } from 'node:test';

import { resetSide, splice } from '../../../src/proxy/splice.ts';

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

/** A socket pair and an HTTP/2 stream pair on loopback; `ours` sides are spliced together. */
async function socketAndStream(t: TestContext): Promise<{ socket: Socket; socketPeer: Socket; stream: Http2Stream; streamPeer: Http2Stream }> {
  const sockets = new Promise<Socket>((resolve) => {
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      resolve(s);
    });
    server.listen(0, '127.0.0.1');
    t.after(() => server.close());
    server.once('listening', () => {
      const c = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, allowHalfOpen: true });
      c.on('error', () => undefined);
      t.after(() => c.destroy());
      socketPeer = c;
    });
  });
  let socketPeer: Socket | undefined;
  const h2server = createH2Server();
  const streams = new Promise<Http2Stream>((resolve) => h2server.on('stream', (s) => {
    s.on('error', () => undefined);
    s.respond({ ':status': 200 });
    resolve(s);
  }));
  await new Promise<void>((r) => h2server.listen(0, '127.0.0.1', r));
  const session = h2connect(`http://127.0.0.1:${(h2server.address() as AddressInfo).port}`);
  session.on('error', () => undefined);
  t.after(() => {
    session.destroy();
    h2server.close();
  });
  const streamPeer = session.request({ ':path': '/' }, { endStream: false });
  streamPeer.on('error', () => undefined);
  const [socket, stream] = await Promise.all([sockets, streams]);
  assert.ok(socketPeer !== undefined);
  return { socket, socketPeer, stream, streamPeer };
}

const closedWith = (s: Http2Stream): Promise<number | undefined> => new Promise((resolve) => s.once('close', () => resolve(s.rstCode)));

test('a splice its signal ends resets the socket and cancels the stream (RST_STREAM CANCEL); a socket reset passes on as CONNECT_ERROR', async (t) => {
  {
    const { socket, socketPeer, stream, streamPeer } = await socketAndStream(t);
    const ac = new AbortController();
    const done = splice(socket, stream, ac.signal);
    const peerError = new Promise<string | undefined>((resolve) => socketPeer.once('error', (e: NodeJS.ErrnoException) => resolve(e.code)));
    const code = closedWith(streamPeer);
    ac.abort();
    assert.equal((await done).outcome, 'aborted');
    assert.equal(await code, h2constants.NGHTTP2_CANCEL, 'the stream\'s peer is told the stream was cancelled');
    assert.equal(await peerError, 'ECONNRESET', 'the socket\'s peer is reset');
  }
  {
    const { socket, socketPeer, stream, streamPeer } = await socketAndStream(t);
    const done = splice(socket, stream);
    const code = closedWith(streamPeer);
    socketPeer.resetAndDestroy();
    assert.equal((await done).outcome, 'downstream_reset');
    assert.equal(await code, h2constants.NGHTTP2_CONNECT_ERROR, 'a TCP reset is passed on as CONNECT_ERROR (RFC 9113 section 8.5)');
  }
});
