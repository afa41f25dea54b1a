// Protocol selection: what a port declares, which ports are server-first (opaque at once),
// what a client's first bytes say; and the peek itself on real sockets: bytes go back on the
// socket, the bound holds, a FIN that came with the bytes is still delivered after.

import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';

import type { ServicePort } from '../../../src/model/types.ts';
import type { Destination } from '../../../src/proxy/outbound-route.ts';
import { classifyClientBytes, portDecision, type ClientBytes } from '../../../src/proxy/protocol-select.ts';
import { peekClient } from '../../../src/proxy/sniff.ts';
import { service, workload } from './harness.ts';

function toService(p: Partial<ServicePort>): Destination {
  const s = service('web', 'shop', '198.18.10.1', 80, 8080);
  const port: ServicePort = { name: undefined, port: 80, targetPort: 8080, protocol: 'TCP', ...p };
  return { kind: 'service', service: { service: { ...s, ports: [port] }, port }, endpoints: [] };
}

const pod = workload('db', 'shop', '127.0.3.1', 'a');
const decisions: Array<[string, Destination, string]> = [
  ['appProtocol http', toService({ appProtocol: 'http' }), 'http:http'],
  ['appProtocol kubernetes.io/h2c', toService({ appProtocol: 'kubernetes.io/h2c' }), 'http:http2'],
  ['appProtocol grpc', toService({ appProtocol: 'grpc' }), 'http:grpc'],
  ['appProtocol kubernetes.io/ws', toService({ appProtocol: 'kubernetes.io/ws' }), 'http:http'],
  ['appProtocol tcp', toService({ appProtocol: 'tcp' }), 'opaque'],
  ['appProtocol wins over the name', toService({ appProtocol: 'tcp', name: 'http-web' }), 'opaque'],
  ['name http-web', toService({ name: 'http-web' }), 'http:http'],
  ['name http2-x', toService({ name: 'http2-x' }), 'http:http2'],
  ['name grpc-api', toService({ name: 'grpc-api' }), 'http:grpc'],
  ['name tcp-db', toService({ name: 'tcp-db' }), 'opaque'],
  ['unnamed port 80: sniff', toService({}), 'sniff'],
  ['name web (no known prefix): sniff', toService({ name: 'web' }), 'sniff'],
  ['server-first service port 6379', toService({ port: 6379, targetPort: 6379 }), 'opaque'],
  ['server-first target port 5432 behind port 80', toService({ port: 80, targetPort: 5432 }), 'opaque'],
  ['SMTP 25', toService({ port: 25, targetPort: 2525 }), 'opaque'],
  ['a declared http name on a server-first port is still http', toService({ port: 3306, targetPort: 3306, name: 'http' }), 'http:http'],
  ['pod IP, port 3306', { kind: 'workload', target: { ip: '127.0.3.1', port: 3306, workload: pod } }, 'opaque'],
  ['pod IP, port 8080', { kind: 'workload', target: { ip: '127.0.3.1', port: 8080, workload: pod } }, 'sniff'],
  ['outside the mesh', { kind: 'external', target: { ip: '192.0.2.1', port: 80, workload: undefined } }, 'opaque'],
];

for (const [name, destination, want] of decisions) {
  test(`port decision: ${name}`, () => {
    const d = portDecision(destination);
    assert.equal(d.kind === 'http' ? `http:${d.declared}` : d.kind, want);
  });
}

const bytes: Array<[string, string, ClientBytes]> = [
  ['nothing yet', '', 'more'],
  ['G', 'G', 'more'],
  ['GET without a space yet', 'GET', 'more'],
  ['GET line incomplete', 'GET /index.html HT', 'more'],
  ['GET request line', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'http1'],
  ['HTTP/1.0 with a bare LF', 'POST /a HTTP/1.0\n', 'http1'],
  ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\n', 'http1'],
  ['PROPFIND (WebDAV)', 'PROPFIND /d HTTP/1.1\r\n', 'http1'],
  ['lowercase method', 'get / HTTP/1.1\r\n', 'opaque'],
  ['unknown method', 'FETCH / HTTP/1.1\r\n', 'opaque'],
  ['HTTP/2 in a request line is not HTTP/1', 'GET / HTTP/2\r\n', 'opaque'],
  ['h2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'h2'],
  ['h2 preface, partial', 'PRI * HTTP/2.0\r\n', 'more'],
  ['P could be POST or PRI', 'P', 'more'],
  ['TLS ClientHello', '\x16\x03\x01\x02\x00\x01', 'opaque'],
  ['an SSH banner', 'SSH-2.0-OpenSSH_9.2\r\n', 'opaque'],
  ['redis inline command', 'PING\r\n', 'opaque'],
  ['a very long first word', 'ABCDEFGHIJKLMNOP', 'opaque'],
];

for (const [name, input, want] of bytes) {
  test(`client bytes: ${name}`, () => {
    assert.equal(classifyClientBytes(Buffer.from(input, 'latin1')), want);
  });
}

test('client bytes: a request line past 8 KiB without a newline is not parsed as HTTP', () => {
  assert.equal(classifyClientBytes(Buffer.from(`GET /${'a'.repeat(9000)}`)), 'opaque');
  assert.equal(classifyClientBytes(Buffer.from(`GET /${'a'.repeat(4000)}`)), 'more');
});

/** A server whose accepted sockets are paused (as the outbound listener's are), and a client to it. */
async function pair(t: TestContext): Promise<{ server: Socket; client: Socket }> {
  let accepted: (s: Socket) => void = () => undefined;
  const got = new Promise<Socket>((r) => {
    accepted = r;
  });
  const srv = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => accepted(s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  const client = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await new Promise<void>((r) => client.once('connect', () => r()));
  const server = await got;
  t.after(() => {
    client.destroy();
    server.destroy();
    srv.close();
  });
  return { server, client };
}

function readAll(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts).toString()));
    s.resume();
  });
}

test('peek: HTTP/1 is recognised and every byte is read again afterwards', async (t) => {
  const { server, client } = await pair(t);
  const request = 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n';
  client.write(request.slice(0, 5));
  setTimeout(() => client.end(request.slice(5)), 20);
  const seen = await peekClient(server, 1000, new AbortController().signal);
  assert.equal(seen.result, 'http1');
  assert.equal(await readAll(server), request);
});

test('peek: a silent client is given up on at the bound, nothing consumed', async (t) => {
  const { server, client } = await pair(t);
  const t0 = performance.now();
  const seen = await peekClient(server, 100, new AbortController().signal);
  const waited = performance.now() - t0;
  assert.equal(seen.result, 'timeout');
  assert.equal(seen.bytes, 0);
  assert.ok(waited >= 95 && waited < 1000, `waited ${waited} ms`);
  client.end('late');
  assert.equal(await readAll(server), 'late');
});

test('peek: a FIN right behind indecisive bytes: the bytes and the end both still arrive', async (t) => {
  const { server, client } = await pair(t);
  client.end('GE');
  const seen = await peekClient(server, 1000, new AbortController().signal);
  assert.equal(seen.result, 'closed');
  assert.equal(await readAll(server), 'GE');
});

test('peek: opaque bytes are decided at once, without waiting for the bound', async (t) => {
  const { server, client } = await pair(t);
  client.write('\x16\x03\x01hello');
  const t0 = performance.now();
  const seen = await peekClient(server, 5000, new AbortController().signal);
  assert.equal(seen.result, 'opaque');
  assert.ok(performance.now() - t0 < 1000);
  client.end();
  assert.equal(await readAll(server), '\x16\x03\x01hello');
});

test('peek: an abort ends the wait', async (t) => {
  const { server } = await pair(t);
  const c = new AbortController();
  setTimeout(() => c.abort(), 20);
  const seen = await peekClient(server, Number.POSITIVE_INFINITY, c.signal);
  assert.equal(seen.result, 'closed');
});
