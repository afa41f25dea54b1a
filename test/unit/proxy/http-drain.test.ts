// The HTTP/1.1 downstream on drain: a connection handed over with its first request still
// unread is answered (connection: close) before it ends; an idle keep-alive one ends at once.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { H1Downstream, type H1Connection } from '../../../src/proxy/http/downstream-h1.ts';

const hooks: H1Connection = {
  request: (_req, sink) => {
    sink.start({ status: 200, headers: { 'content-length': '2' }, endOfStream: false });
    sink.write(Buffer.from('ok'));
    sink.end(undefined);
    return Promise.resolve();
  },
  upgrade: (_req, socket) => socket.destroy(),
  malformed: () => undefined,
};

/** A loopback pair: the server side as accepted, the client side. */
async function pair(): Promise<{ server: Socket; client: Socket; close: () => void }> {
  const listener = createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const accepted = once(listener, 'connection') as Promise<[Socket]>;
  const client = connect((listener.address() as AddressInfo).port, '127.0.0.1');
  const [server] = await accepted;
  return { server, client, close: () => { client.destroy(); server.destroy(); listener.close(); } };
}

function readAll(client: Socket): Promise<string> {
  let text = '';
  client.on('data', (b: Buffer) => { text += b.toString(); });
  return new Promise((resolve) => client.once('end', () => resolve(text)));
}

test('drain before the first request is parsed: it is answered with connection: close, then the connection ends', async () => {
  const { server, client, close } = await pair();
  try {
    const answer = readAll(client);
    client.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await once(server, 'readable'); // the sniff saw bytes; they wait unread
    const handle = new H1Downstream().serve(server, hooks);
    handle.drain(); // the listener drained at that moment
    const text = await answer;
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/, `an answer, not an empty close: ${JSON.stringify(text)}`);
    assert.match(text, /connection: close/i);
    assert.match(text, /\r\n\r\nok$/);
  } finally {
    close();
  }
});

test('drain of an idle keep-alive connection (its request answered) ends it at once', async () => {
  const { server, client, close } = await pair();
  try {
    const answer = readAll(client);
    client.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await once(server, 'readable');
    const handle = new H1Downstream().serve(server, hooks);
    let seen = '';
    client.on('data', (b: Buffer) => { seen += b.toString(); });
    while (!seen.endsWith('ok')) await once(client, 'data');
    assert.doesNotMatch(seen, /connection: close/i, 'keep-alive before the drain');
    handle.drain();
    const started = Date.now();
    await answer;
    assert.ok(Date.now() - started < 1000, 'ended at once');
  } finally {
    close();
  }
});
