// The downstreams on drain. HTTP/1.1: a connection handed over with its first request still
// unread is answered (connection: close) before it ends; an idle keep-alive one ends at once.
// HTTP/2: the same connection gets its requests answered, then GOAWAY (not REFUSED_STREAM);
// one whose stream was already served gets GOAWAY at once; one that never sends a request is
// closed after a bounded wait.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { connect as h2Connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { H1Downstream, type H1Connection } from '../../../src/proxy/http/downstream-h1.ts';
import { serveH2, type H2Connection } from '../../../src/proxy/http/downstream-h2.ts';

const answerOk: H2Connection['request'] = (_req, sink) => {
  sink.start({ status: 200, headers: { 'content-length': '2' }, endOfStream: false });
  sink.write(Buffer.from('ok'));
  sink.end(undefined);
  return Promise.resolve();
};
const hooks: H1Connection = { request: answerOk, upgrade: (_req, socket) => socket.destroy(), malformed: () => undefined };
const h2Hooks: H2Connection = { request: answerOk, malformed: () => undefined };

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

/** Runs `body` on a fresh loopback pair, closed afterwards whatever happens. */
async function withPair(body: (p: { server: Socket; client: Socket }) => Promise<void>): Promise<void> {
  const { server, client, close } = await pair();
  try {
    await body({ server, client });
  } finally {
    close();
  }
}

function readAll(client: Socket): Promise<string> {
  let text = '';
  client.on('data', (b: Buffer) => { text += b.toString(); });
  return new Promise((resolve) => client.once('end', () => resolve(text)));
}

test('drain before the first request is parsed: it is answered with connection: close, then the connection ends', () => withPair(async ({ server, client }) => {
  const answer = readAll(client);
  client.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  await once(server, 'readable'); // the sniff saw bytes; they wait unread
  const handle = new H1Downstream().serve(server, hooks);
  handle.drain(); // the listener drained at that moment
  const text = await answer;
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/, `an answer, not an empty close: ${JSON.stringify(text)}`);
  assert.match(text, /connection: close/i);
  assert.match(text, /\r\n\r\nok$/);
}));

test('drain of an idle keep-alive connection (its request answered) ends it at once', () => withPair(async ({ server, client }) => {
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
}));

/** An h2c client over the client side of a pair, and what it saw. */
function h2Client(client: Socket): { session: ClientHttp2Session; goaway: Promise<unknown> } {
  const session = h2Connect('http://x', { createConnection: () => client });
  session.on('error', () => undefined);
  return { session, goaway: once(session, 'goaway') };
}

function h2Answer(req: ClientHttp2Stream): Promise<{ status: unknown; body: string }> {
  let status: unknown;
  let body = '';
  req.on('response', (h) => { status = h[':status']; });
  req.on('data', (b: Buffer) => { body += b.toString(); });
  return new Promise((resolve, reject) => {
    req.once('end', () => resolve({ status, body }));
    req.once('error', reject);
  });
}

test('h2 drain before the first streams are read: they are answered, then GOAWAY (none refused)', () => withPair(async ({ server, client }) => {
  const c = h2Client(client);
  const answers = [1, 2].map(() => {
    const req = c.session.request({ ':path': '/' });
    req.end();
    return h2Answer(req);
  });
  await once(server, 'readable'); // the sniff saw the preface; it waits unread
  await new Promise((resolve) => setTimeout(resolve, 50)); // both requests are in the socket
  serveH2(server, h2Hooks).drain();
  for (const a of await Promise.all(answers)) assert.deepEqual(a, { status: 200, body: 'ok' });
  await c.goaway;
}));

test('h2 drain of a connection whose stream was served: GOAWAY at once', () => withPair(async ({ server, client }) => {
  const c = h2Client(client);
  const req = c.session.request({ ':path': '/' });
  req.end();
  await once(server, 'readable');
  const handle = serveH2(server, h2Hooks);
  assert.deepEqual(await h2Answer(req), { status: 200, body: 'ok' });
  const started = Date.now();
  handle.drain();
  await c.goaway;
  assert.ok(Date.now() - started < 500, `GOAWAY at once, not after the first-request wait (${Date.now() - started} ms)`);
}));

test('h2 drain of a connection that never sends a request: closed after a bounded wait', () => withPair(async ({ server, client }) => {
  const c = h2Client(client);
  await once(server, 'readable'); // the preface and SETTINGS only
  const started = Date.now();
  serveH2(server, h2Hooks).drain();
  await c.goaway;
  assert.ok(Date.now() - started < 3000, `GOAWAY within the wait (${Date.now() - started} ms)`);
}));
