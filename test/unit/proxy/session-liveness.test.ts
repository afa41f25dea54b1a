// Tunnel liveness by PING (SessionGuard): a peer that stops answering without any FIN or RST
// reaching us (its kernel's reset lost, or heard by nobody) is declared gone and the session's
// streams are destroyed; a live peer whose stream merely sits idle is left alone.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, createServer, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { createServer as createTcpServer, connect as tcpConnect, type AddressInfo, type Server, type Socket } from 'node:net';

import { SessionGuard } from '../../../src/proxy/tunnel-session.ts';

/** An h2 server behind a TCP relay that can be frozen: bytes stop flowing both ways, no FIN. */
async function frozenPeer(t: { after(f: () => unknown): void }) {
  const h2 = createServer();
  h2.on('stream', (stream) => stream.respond({ ':status': 200 }));
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  let frozen = false;
  const sockets: Socket[] = [];
  const relay: Server = createTcpServer((down) => {
    const up = tcpConnect((h2.address() as AddressInfo).port, '127.0.0.1');
    sockets.push(down, up);
    down.on('data', (b) => { if (!frozen) up.write(b); });
    up.on('data', (b) => { if (!frozen) down.write(b); });
    down.on('error', () => undefined);
    up.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    relay.close();
    h2.close();
  });
  return { port: (relay.address() as AddressInfo).port, freeze: () => { frozen = true; } };
}

async function openStream(port: number, guard: SessionGuard): Promise<{ session: ClientHttp2Session; stream: ClientHttp2Stream }> {
  const session = connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  guard.watch(session, 'tunnel to the test peer');
  const stream = session.request({ ':method': 'POST', ':path': '/' }, { endStream: false });
  stream.on('error', () => undefined);
  guard.track(stream);
  await new Promise<void>((resolve, reject) => {
    stream.once('response', () => resolve());
    stream.once('error', reject);
  });
  return { session, stream };
}

test('a peer that stops answering PINGs (no FIN, no RST) is gone: the session and its streams are destroyed', async (t) => {
  const peer = await frozenPeer(t);
  const guard = new SessionGuard({ pingIntervalMs: 50, pingTimeoutMs: 300 });
  const { session, stream } = await openStream(peer.port, guard);
  const began = performance.now();
  peer.freeze();
  const err = await new Promise<Error | undefined>((resolve) => stream.once('close', () => resolve((stream as unknown as { errored?: Error }).errored)));
  const ms = performance.now() - began;
  assert.ok(session.destroyed, 'the session is destroyed');
  assert.ok(stream.destroyed, 'its stream is destroyed');
  assert.match(String(err?.message ?? ''), /PING|connection closed under the stream/, `the stream names why: ${String(err?.message)}`);
  assert.ok(ms >= 300, `not before the PING timeout (${ms.toFixed(0)} ms)`);
  assert.ok(ms < 3000, `soon after it (${ms.toFixed(0)} ms)`);
});

test('a live peer with an idle stream answers its PINGs: nothing is destroyed', async (t) => {
  const peer = await frozenPeer(t);
  const guard = new SessionGuard({ pingIntervalMs: 50, pingTimeoutMs: 300 });
  const { session, stream } = await openStream(peer.port, guard);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(session.destroyed, false, 'the session lives');
  assert.equal(stream.destroyed, false, 'its stream lives');
  session.destroy();
});
