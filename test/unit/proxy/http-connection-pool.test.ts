// DestinationPolicy connectionPool in the HTTP layer on the loopback mesh (real sockets, real
// undici and node:http2 clients): tcp.maxConnections bounds the upstream connections to the
// Service (6 slow requests at once, at most 2 connections: 2 answered, 4 refused 503 UO at once,
// never queued, counted); http.maxRequestsPerConnection retires a connection after N
// requests, for HTTP/1.1 (a new connection every 3 requests) and HTTP/2 (a new session every
// 3 streams); without limits connections are reused.

import assert from 'node:assert/strict';
import { connect as h2connect, type IncomingHttpHeaders } from 'node:http2';
import { test } from 'node:test';

import { Client } from 'undici';

import { ConcurrencyLimits, counterMemory } from '../../../src/proxy/resilience/concurrency-limit.ts';
import type { ServicePool } from '../../../src/proxy/http/upstream-pools.ts';
import { l7Mesh, WEB_VIP, type L7Mesh } from './l7-harness.ts';

function h1Client(n: L7Mesh): Client {
  return new Client('http://web.shop', {
    pipelining: 1,
    connect: (_o, cb) => {
      n.dial(80).then((s) => cb(null, s), (e: Error) => cb(e, null));
    },
  });
}

/** Upstream connections (h1) and sessions (h2) the backends accepted. */
function countConnections(n: L7Mesh): { h1: () => number; h2: () => number } {
  let h1 = 0;
  let h2 = 0;
  for (const b of n.backends) {
    b.h1.on('connection', () => h1++);
    b.h2.on('session', () => h2++);
  }
  return { h1: () => h1, h2: () => h2 };
}

/** Leaves the Service port with its first endpoint only (web-1, same node). */
function oneEndpoint(n: L7Mesh, port: number): void {
  n.mesh.services.get(`${WEB_VIP}:${port}`)?.endpoints.splice(1);
}

test('maxConnections 2: of 6 slow requests at once, 2 are answered, 4 get 503 UO at once; the limit is given back', async (t) => {
  const held: (() => void)[] = [];
  const overflowed: string[] = [];
  const limits = new ConcurrencyLimits(counterMemory(64));
  const pool: ServicePool = { serviceKey: 'shop/web', maxConnections: 2 };
  const n = await l7Mesh(t, {
    h1: (name, req, res) => {
      req.resume();
      req.on('end', () => held.push(() => res.end(name)));
    },
    poolFor: (key) => (key === 'shop/web' ? pool : undefined),
    connectionLimits: limits,
    overflowed: (s) => overflowed.push(s),
  });
  const conns = countConnections(n);
  const clients = Array.from({ length: 6 }, () => h1Client(n));
  t.after(() => Promise.all(clients.map((c) => c.destroy())));
  const t0 = performance.now();
  const answers = clients.map(async (c) => {
    const r = await c.request({ path: '/slow', method: 'GET' });
    return { status: r.statusCode, body: await r.body.text(), ms: performance.now() - t0 };
  });
  // The 4 refusals come back while the 2 admitted are still held at their backends.
  const settled: { status: number; body: string; ms: number }[] = [];
  for (const a of answers) void a.then((x) => settled.push(x));
  const deadline = Date.now() + 3000;
  while ((settled.length < 4 || held.length < 2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(settled.length, 4, 'four answered while two are held');
  assert.ok(settled.every((x) => x.status === 503 && /overflow/.test(x.body)), JSON.stringify(settled));
  assert.equal(held.length, 2);
  assert.equal(conns.h1(), 2);
  assert.equal(limits.inUse('connections|shop/web'), 2);
  for (const release of held.splice(0)) release();
  const all = await Promise.all(answers);
  assert.deepEqual(all.map((x) => x.status).sort(), [200, 200, 503, 503, 503, 503]);
  assert.deepEqual(overflowed, ['shop/web', 'shop/web', 'shop/web', 'shop/web']);
  const flags = n.requests.records.map((r) => r.outcome?.flags).filter((f) => f === 'UO');
  assert.equal(flags.length, 4, 'UO in the request records');
  // Closing the pooled connections gives their permits back.
  await n.layer.close();
  const until = Date.now() + 2000;
  while (limits.inUse('connections|shop/web') > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.equal(limits.inUse('connections|shop/web'), 0);
});

test('maxRequestsPerConnection 3, then 1: HTTP/1.1 opens a new upstream connection every 3 requests, then every request; without it one is reused', async (t) => {
  let pool: ServicePool | undefined = { serviceKey: 'shop/web', maxRequestsPerConnection: 3 };
  const n = await l7Mesh(t, { poolFor: () => pool, connectionLimits: new ConcurrencyLimits(counterMemory(64)) });
  oneEndpoint(n, 80);
  const conns = countConnections(n);
  const c = h1Client(n);
  t.after(() => c.destroy());
  for (let i = 0; i < 10; i++) {
    const r = await c.request({ path: '/x', method: 'GET' });
    assert.equal(r.statusCode, 200);
    await r.body.text();
  }
  assert.equal(conns.h1(), 4, '3 + 3 + 3 + 1');
  pool = { serviceKey: 'shop/web', maxRequestsPerConnection: 1 };
  for (let i = 0; i < 4; i++) await (await c.request({ path: '/x', method: 'GET' })).body.text();
  assert.equal(conns.h1(), 8, 'one request per connection');
  pool = undefined;
  for (let i = 0; i < 9; i++) await (await c.request({ path: '/x', method: 'GET' })).body.text();
  assert.equal(conns.h1(), 9, 'no limit: one connection for all nine');
});

test('maxRequestsPerConnection 3: HTTP/2 (gRPC) opens a new session every 3 streams; streams in flight finish on the old one', async (t) => {
  const n = await l7Mesh(t, { poolFor: () => ({ serviceKey: 'shop/web', maxRequestsPerConnection: 3 }), connectionLimits: new ConcurrencyLimits(counterMemory(64)) });
  oneEndpoint(n, 81);
  const conns = countConnections(n);
  const socket = await n.dial(81);
  const s = h2connect('http://web.shop:81', { createConnection: () => socket });
  t.after(() => s.destroy());
  const call = (): Promise<{ status: number; grpc: string | undefined }> => new Promise((resolve, reject) => {
    const st = s.request({ ':method': 'POST', ':path': '/pkg.Svc/M', 'content-type': 'application/grpc', te: 'trailers' });
    let status = 0;
    st.on('response', (h) => {
      status = Number(h[':status']);
    });
    st.on('trailers', (tr: IncomingHttpHeaders) => resolve({ status, grpc: tr['grpc-status'] as string | undefined }));
    st.on('error', reject);
    st.resume();
    st.end(Buffer.alloc(5));
  });
  // Four at once: three on the first session, the fourth on a second.
  const first = await Promise.all([call(), call(), call(), call()]);
  assert.ok(first.every((r) => r.status === 200 && r.grpc === '0'), JSON.stringify(first));
  for (let i = 0; i < 5; i++) await call();
  assert.equal(conns.h2(), 3, '9 streams, 3 per session');
});
