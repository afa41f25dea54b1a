// gRPC deadlines in the HTTP layer on the loopback mesh (real node:http2 client and servers):
// the caller's grpc-timeout is passed on shortened by the time the call spent in the proxy
// (here a 200 ms step before forwarding); a backend slower than the deadline is cut off at
// the deadline with DEADLINE_EXCEEDED (trailers-only, flag UT), and one that has started its
// answer gets the status in trailers after what it sent, not a reset; a call whose deadline ran out
// before it could be sent is answered at once and never reaches a backend; a non-gRPC
// request's grpc-timeout, or a malformed one, sets no deadline.

import assert from 'node:assert/strict';
import { connect as h2connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import type { RequestStep } from '../../../src/proxy/http/exchange.ts';
import { parseGrpcTimeout } from '../../../src/proxy/resilience/grpc-timeout.ts';
import { l7Mesh, type L7Mesh } from './l7-harness.ts';

interface Answer {
  readonly headers: IncomingHttpHeaders;
  readonly trailers: IncomingHttpHeaders;
  readonly body: string;
  readonly ms: number;
}

async function session(n: L7Mesh): Promise<ClientHttp2Session> {
  const s = await n.dial(81);
  const c = h2connect('http://web.shop:81', { createConnection: () => s });
  c.on('error', () => undefined);
  return c;
}

function call(c: ClientHttp2Session, path: string, extra: Record<string, string>): Promise<Answer> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const s = c.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extra });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    s.on('response', (h) => {
      headers = h;
    });
    s.on('trailers', (h: IncomingHttpHeaders) => {
      trailers = h;
    });
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve({ headers, trailers, body: Buffer.concat(parts).toString(), ms: performance.now() - t0 }));
    s.on('error', reject);
    s.end(Buffer.alloc(5));
  });
}

/** Holds every request `ms` before it is forwarded. */
const holdStep = (ms: number): RequestStep => async (_x, next) => {
  await sleep(ms);
  await next();
};

test('grpc-timeout: passed on less the time spent; a slow backend is cut off at the deadline with DEADLINE_EXCEEDED, UT', async (t) => {
  let hits = 0;
  const n = await l7Mesh(t, {
    steps: [holdStep(200)],
    h2: (_name, stream, headers) => {
      hits++;
      stream.resume();
      if (String(headers[':path']).endsWith('/Slow')) return; // never answers
      if (String(headers[':path']).endsWith('/Stream')) { // one message, then nothing
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
        stream.write(Buffer.from([0, 0, 0, 0, 2, 0x68, 0x69]));
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(String(headers['grpc-timeout'] ?? 'none'));
    },
  });
  const c = await session(n);
  t.after(() => c.destroy());

  const echoed = await call(c, '/pkg.Svc/Echo', { 'grpc-timeout': '5S' });
  const passed = parseGrpcTimeout(echoed.body) ?? assert.fail(`grpc-timeout passed on: ${echoed.body}`);
  assert.ok(passed <= 4800 && passed > 4000, `5 s less the 200 ms held: ${passed} ms`);

  const slow = await call(c, '/pkg.Svc/Slow', { 'grpc-timeout': '500m' });
  assert.equal(slow.headers[':status'], 200);
  assert.equal(slow.headers['grpc-status'], '4', 'DEADLINE_EXCEEDED, trailers-only');
  assert.ok(slow.ms >= 480 && slow.ms < 1500, `cut off at the deadline: ${slow.ms.toFixed(0)} ms`);

  const started = await call(c, '/pkg.Svc/Stream', { 'grpc-timeout': '500m' });
  assert.equal(started.headers[':status'], 200);
  assert.equal(started.body, '\u0000\u0000\u0000\u0000\u0002hi', 'the message sent before the deadline arrives whole');
  assert.deepEqual([started.trailers['grpc-status'], started.trailers['grpc-message']], ['4', 'upstream request timeout'], 'DEADLINE_EXCEEDED in trailers, not a reset');
  assert.ok(started.ms >= 480 && started.ms < 1500, `cut off at the deadline: ${started.ms.toFixed(0)} ms`);

  const before = hits;
  const late = await call(c, '/pkg.Svc/Echo', { 'grpc-timeout': '100m' });
  assert.equal(late.headers['grpc-status'], '4');
  assert.ok(late.ms < 450, `answered when the hold ended: ${late.ms.toFixed(0)} ms`);
  assert.equal(hits, before, 'never sent');

  const bad = await call(c, '/pkg.Svc/Echo', { 'grpc-timeout': '5 seconds' });
  assert.equal(bad.headers['grpc-status'], undefined);
  assert.equal(bad.body, '5 seconds', 'malformed: no deadline, passed as it came');
  const none = await call(c, '/pkg.Svc/Echo', {});
  assert.equal(none.body, 'none');

  const flags = n.requests.records.map((r) => r.outcome?.flags);
  assert.deepEqual(flags.filter((f) => f === 'UT').length, 3, JSON.stringify(flags));
});
