// The HTTP layer end to end on loopback: requests on one kept-alive HTTP/1.1 or h2c
// connection are balanced one by one over all four endpoints (two straight, two through
// the mTLS tunnel); bodies stream both ways; trailers, 100-continue, hop-by-hop headers,
// WebSocket upgrade; local answers (no endpoint, denied, retry past a dead endpoint).

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect as h2connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { test } from 'node:test';

import { Client } from 'undici';

import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { denyTo, until } from './harness.ts';
import { l7Mesh, readUntil, type L7Mesh } from './l7-harness.ts';

function h1Client(n: L7Mesh, port = 80): Client {
  return new Client(`http://web.shop:${port}`, {
    pipelining: 1,
    connect: (_o, cb) => {
      n.dial(port).then((s) => cb(null, s), (e: Error) => cb(e, null));
    },
  });
}

function h2Session(n: L7Mesh, port = 81): Promise<ClientHttp2Session> {
  return n.dial(port).then((s: Socket) => {
    const session = h2connect(`http://web.shop:${port}`, { createConnection: () => s });
    session.on('error', () => undefined);
    return session;
  });
}

interface H2Answer {
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly trailers: IncomingHttpHeaders | undefined;
}

function h2Request(session: ClientHttp2Session, path: string, body?: Buffer, extra: Record<string, string> = {}): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extra }, { endStream: body === undefined });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | undefined;
    const parts: Buffer[] = [];
    s.on('response', (h) => {
      headers = h;
    });
    s.on('trailers', (t: IncomingHttpHeaders) => {
      trailers = t;
    });
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => resolve({ headers, body: Buffer.concat(parts), trailers }));
    s.on('error', reject);
    if (body !== undefined) s.end(body);
  });
}

test('HTTP/1.1: requests on one kept-alive connection spread over all four endpoints', async (t) => {
  // Endpoints known for a minute (as in a running mesh): Linkerd's 30 ms first estimate has
  // decayed, so each endpoint is tried and then chosen by what it measures.
  let clock = 0;
  const n = await l7Mesh(t, { now: () => clock });
  const client = h1Client(n);
  t.after(() => client.destroy());
  await (await client.request({ path: '/warm', method: 'GET' })).body.text();
  clock = 60_000;
  const seen = new Map<string, number>();
  for (let i = 0; i < 40; i++) {
    const r = await client.request({ path: `/n/${i}`, method: 'GET' });
    assert.equal(r.statusCode, 200);
    const text = await r.body.text();
    const backend = String(r.headers['x-backend']);
    assert.match(text, new RegExp(`^${backend} GET /n/${i} 0$`));
    seen.set(backend, (seen.get(backend) ?? 0) + 1);
  }
  assert.deepEqual([...seen.keys()].sort(), ['web-1', 'web-2', 'web-3', 'web-4'], `spread: ${JSON.stringify([...seen])}`);
  assert.equal(n.outbound.connections, 1, 'one client connection');
  await until(() => n.requests.records.length === 41 && n.requests.records.every((r) => r.outcome !== undefined), 3000, 'records');
  const r0 = n.requests.records[1];
  assert.equal(r0?.outcome?.status, 200);
  assert.equal(r0?.outcome?.flags, ResponseFlags.OK);
  assert.equal(r0?.description?.reporter, 'source');
  assert.equal(r0?.description?.method, 'GET');
  assert.equal(r0?.description?.service?.host, 'web.shop.svc.cluster.local');
  assert.equal(r0?.description?.source.workload, 'client');
  const tunnelled = n.requests.records.filter((r) => r.description?.security === 'mutual_tls');
  assert.ok(tunnelled.length > 0 && tunnelled.every((r) => ['web-3', 'web-4'].includes(r.description?.destination.workload ?? '')));
});

test('h2c gRPC-style: one channel spreads calls over all endpoints, trailers (grpc-status) arrive', async (t) => {
  const n = await l7Mesh(t);
  const session = await h2Session(n);
  t.after(() => session.destroy());
  const seen = new Set<string>();
  const calls = await Promise.all(Array.from({ length: 40 }, (_, i) => h2Request(session, `/pkg.Svc/Call${i}`, Buffer.from('abc'))));
  for (const c of calls) {
    assert.equal(c.headers[':status'], 200);
    assert.equal(c.trailers?.['grpc-status'], '0');
    seen.add(String(c.headers['x-backend']));
    assert.match(c.body.toString(), / \/pkg\.Svc\/Call\d+ 3$/);
  }
  assert.deepEqual([...seen].sort(), ['web-1', 'web-2', 'web-3', 'web-4']);
  await until(() => n.requests.records.filter((r) => r.outcome !== undefined).length === 40, 3000, 'records');
  assert.ok(n.requests.records.every((r) => r.outcome?.grpcStatus === '0' && r.description?.protocol === 'grpc'));
});

test('HTTP/1.1: a 4 MiB upload and download stream through whole (sha256), direct and tunnelled', async (t) => {
  const n = await l7Mesh(t, {
    h1: (name, req, res) => {
      res.setHeader('x-backend', name);
      // Echo the body back as it comes, with backpressure.
      req.pipe(res);
    },
  });
  const client = h1Client(n);
  t.after(() => client.destroy());
  const backends = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const body = randomBytes(4 * 1024 * 1024);
    const r = await client.request({ path: '/echo', method: 'POST', body });
    const back = Buffer.from(await r.body.arrayBuffer());
    assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(body).digest('hex'));
    backends.add(String(r.headers['x-backend']));
  }
  assert.ok(backends.size >= 2, `several backends: ${[...backends].join(',')}`);
});

test('HTTP/1.1: Expect 100-continue gets 100 from the proxy, then the body flows', async (t) => {
  const n = await l7Mesh(t);
  const s = await n.dial();
  t.after(() => s.destroy());
  s.write('POST /up HTTP/1.1\r\nhost: web.shop\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n');
  const first = await readUntil(s, (x) => x.includes('\r\n\r\n'));
  assert.match(first, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
  s.write('hello');
  const rest = await readUntil(s, (x) => / POST \/up 5$/.test(x));
  assert.match(rest, /^HTTP\/1\.1 200 OK/);
});

test('HTTP/1.1: hop-by-hop headers stop at the proxy, x-forwarded-client-cert is dropped, x-forwarded-for passes untouched', async (t) => {
  let got: IncomingHttpHeaders | undefined;
  const n = await l7Mesh(t, {
    h1: (name, req, res) => {
      got = req.headers;
      res.setHeader('connection', 'x-secret-hop');
      res.setHeader('x-secret-hop', 'must not reach the client');
      res.end(name);
    },
  });
  const s = await n.dial();
  t.after(() => s.destroy());
  s.write([
    'GET / HTTP/1.1', 'host: web.shop', 'connection: x-hop-a, keep-alive', 'x-hop-a: 1', 'keep-alive: timeout=1', 'te: trailers',
    'proxy-connection: keep-alive', 'x-forwarded-client-cert: By=spiffe://cluster.local/ns/x/sa/admin', 'x-forwarded-for: 203.0.113.9',
    'x-end-to-end: kept', '', '',
  ].join('\r\n'));
  const answer = await readUntil(s, (x) => /\r\n\r\nweb-\d$/.test(x));
  for (const hop of ['x-hop-a', 'keep-alive', 'te', 'proxy-connection', 'x-forwarded-client-cert']) assert.equal(got?.[hop], undefined, hop);
  assert.equal(got?.['x-forwarded-for'], '203.0.113.9');
  assert.equal(got?.['x-end-to-end'], 'kept');
  assert.equal(got?.host, 'web.shop');
  assert.doesNotMatch(answer, /x-secret-hop/i);
  assert.match(answer, /^HTTP\/1\.1 200 OK/);
});

test('WebSocket-style Upgrade is spliced after the 101, both ways, straight and through the tunnel', async (t) => {
  const n = await l7Mesh(t);
  const backends = new Set<string>();
  const kinds = (): Set<string> => new Set([...backends].map((b) => (b === 'web-1' || b === 'web-2' ? 'direct' : 'tunnel')));
  for (let i = 0; i < 40 && kinds().size < 2; i++) {
    const s = await n.dial();
    s.write('GET /chat HTTP/1.1\r\nhost: web.shop\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    const head = await readUntil(s, (x) => x.includes('\r\n\r\n'));
    assert.match(head, /^HTTP\/1\.1 101 /);
    backends.add(/x-backend: (\S+)/.exec(head)?.[1] ?? '?');
    const early = head.slice(head.indexOf('\r\n\r\n') + 4);
    s.write('ping-after-upgrade');
    const echo = early + await readUntil(s, (x) => (early + x).length >= 18);
    assert.equal(echo, 'ping-after-upgrade');
    s.destroy();
  }
  assert.deepEqual([...kinds()].sort(), ['direct', 'tunnel'], `backends reached: ${[...backends].join(',')}`);
  await until(() => n.requests.records.some((r) => r.outcome?.status === 101), 3000, 'upgrade records');
});

test('no endpoints: 503 UH; policy denial: 403 "RBAC: access denied" for HTTP and PERMISSION_DENIED for gRPC', async (t) => {
  const n = await l7Mesh(t, { authorize: denyTo('web-1', 'web-2', 'web-3', 'web-4') });
  const client = h1Client(n);
  t.after(() => client.destroy());
  const r = await client.request({ path: '/', method: 'GET' });
  assert.equal(r.statusCode, 403);
  assert.equal(await r.body.text(), 'RBAC: access denied');
  const session = await h2Session(n);
  t.after(() => session.destroy());
  const g = await h2Request(session, '/pkg.Svc/M');
  assert.equal(g.headers[':status'], 200);
  assert.equal(g.headers['grpc-status'], '7');
  await until(() => n.requests.records.filter((x) => x.outcome !== undefined).length === 2, 3000, 'records');
  assert.ok(n.requests.records.every((x) => x.outcome?.flags === ResponseFlags.DENIED));

  const empty = await l7Mesh(t);
  for (const s of empty.mesh.services.values()) s.endpoints.length = 0;
  const c2 = h1Client(empty);
  t.after(() => c2.destroy());
  const r2 = await c2.request({ path: '/', method: 'GET' });
  assert.equal(r2.statusCode, 503);
  assert.equal(await r2.body.text(), 'no healthy upstream');
});

test('a connect failure is retried on another endpoint; the request still succeeds', async (t) => {
  const n = await l7Mesh(t);
  // web-1 and web-3 stop listening: one direct, one behind the tunnel (the peer answers 503).
  for (const b of [n.backends[0], n.backends[2]]) {
    b?.h1.closeAllConnections();
    await new Promise<void>((r) => b?.h1.close(() => r()));
  }
  const client = h1Client(n);
  t.after(() => client.destroy());
  for (let i = 0; i < 20; i++) {
    const r = await client.request({ path: '/', method: 'GET' });
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers['x-backend']), /^web-[24]$/);
    await r.body.text();
  }
  await until(() => n.requests.records.filter((x) => x.outcome !== undefined).length === 20, 3000, 'records');
  assert.ok(n.requests.records.some((x) => (x.outcome?.retries ?? 0) > 0), 'some requests were retried');
});

test('the destination agent reports each tunnelled request (reporter="destination"), none for direct ones', async (t) => {
  const n = await l7Mesh(t);
  const client = h1Client(n);
  t.after(() => client.destroy());
  for (let i = 0; i < 30; i++) await (await client.request({ path: `/d/${i}`, method: 'GET' })).body.text();
  await until(() => n.requests.records.filter((r) => r.outcome !== undefined).length === 30, 3000, 'source records');
  const tunnelled = n.requests.records.filter((r) => r.description?.security === 'mutual_tls');
  await until(() => n.inboundRequests.records.filter((r) => r.outcome !== undefined).length === tunnelled.length, 3000, 'destination records');
  for (const r of n.inboundRequests.records) {
    assert.equal(r.description?.reporter, 'destination');
    assert.equal(r.description?.security, 'mutual_tls');
    assert.equal(r.description?.source.principal, n.client.identity);
    assert.equal(r.description?.source.workload, 'client', 'labelled from the Forwarded pod, whose identity is the verified one');
    assert.match(r.description?.destination.workload ?? '', /^web-[34]$/);
    assert.equal(r.outcome?.status, 200);
  }
  assert.deepEqual(n.inboundRequests.records.map((r) => r.description?.path).sort(), tunnelled.map((r) => r.description?.path).sort());
});

test('an upstream that resets mid-upload resets the client (no 503 once body bytes went)', async (t) => {
  const n = await l7Mesh(t, {
    h1: (_name, req) => {
      // Read a little, then kill the connection.
      req.once('data', () => req.socket.destroy());
    },
  });
  const s = await n.dial();
  t.after(() => s.destroy());
  s.write('POST /up HTTP/1.1\r\nhost: web.shop\r\ncontent-length: 10000000\r\n\r\n');
  const ended = new Promise<string>((resolve) => {
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
    });
    s.on('error', () => undefined);
    s.once('close', () => resolve(got));
  });
  const chunk = Buffer.alloc(64 * 1024, 1);
  const pump = setInterval(() => {
    if (!s.destroyed) s.write(chunk);
  }, 5);
  t.after(() => clearInterval(pump));
  assert.equal(await ended, '', 'no response, the connection went');
  await until(() => n.requests.records.some((r) => r.outcome !== undefined), 3000, 'record');
  assert.equal(n.requests.records[0]?.outcome?.flags, ResponseFlags.UPSTREAM_RESET);
});

test('route decisions are carried out: rewrite and header modifiers, redirect, 404 and gRPC UNIMPLEMENTED, response modifiers', async (t) => {
  let seen: IncomingHttpHeaders | undefined;
  let seenPath = '';
  const route = { kind: 'HTTPRoute', namespace: 'shop', name: 'r', rule: 0 };
  const n = await l7Mesh(t, {
    h1: (name, req, res) => {
      seen = req.headers;
      seenPath = req.url ?? '';
      res.setHeader('x-drop-me', '1');
      res.end(name);
    },
    route: (at, req) => {
      if (req.path.startsWith('/old')) return { kind: 'redirect', route, status: 301, location: 'http://web.shop/new', responseHeaders: [] };
      if (req.path.startsWith('/none') || req.grpc) return { kind: 'reject', route: undefined, status: 404, grpcStatus: 12, reason: 'no rule matched', responseHeaders: [] };
      return {
        kind: 'forward', route, backend: { serviceKey: at.service.key, port: at.port.port },
        requestHeaders: [{ set: [{ name: 'x-env', value: 'canary' }], add: [{ name: 'x-hop', value: 'weft' }], remove: ['x-secret'] }],
        responseHeaders: [{ set: [{ name: 'x-served-by', value: 'weft' }], add: [], remove: ['x-drop-me'] }],
        rewrite: { path: req.path.replace(/^\/api/, '/v2'), authority: 'internal.web' }, mirrors: [],
        requestTimeoutMs: undefined, backendRequestTimeoutMs: undefined,
      };
    },
  });
  const client = h1Client(n);
  t.after(() => client.destroy());
  const r = await client.request({ path: '/api/items?x=1', method: 'GET', headers: { 'x-secret': 's', 'x-env': 'prod' } });
  assert.equal(r.statusCode, 200);
  await r.body.text();
  assert.equal(seenPath, '/v2/items?x=1');
  assert.equal(seen?.host, 'internal.web');
  assert.equal(seen?.['x-env'], 'canary');
  assert.equal(seen?.['x-hop'], 'weft');
  assert.equal(seen?.['x-secret'], undefined);
  assert.equal(r.headers['x-served-by'], 'weft');
  assert.equal(r.headers['x-drop-me'], undefined);

  const redirect = await client.request({ path: '/old/page', method: 'GET' });
  assert.equal(redirect.statusCode, 301);
  assert.equal(redirect.headers.location, 'http://web.shop/new');
  await redirect.body.text();
  const missing = await client.request({ path: '/none', method: 'GET' });
  assert.equal(missing.statusCode, 404);
  await missing.body.text();

  const session = await h2Session(n);
  t.after(() => session.destroy());
  const g = await h2Request(session, '/pkg.Svc/M');
  assert.equal(g.headers[':status'], 200);
  assert.equal(g.headers['grpc-status'], '12');
  await until(() => n.requests.records.filter((x) => x.outcome !== undefined).length === 4, 3000, 'records');
  assert.equal(n.requests.records[0]?.description?.route, 'shop/r');
  assert.equal(n.requests.records[2]?.outcome?.flags, ResponseFlags.NO_ROUTE);
});

test('paths are normalised before routing and sent on normalised; a broken request target gets 400', async (t) => {
  const seenPaths: string[] = [];
  const decided: string[] = [];
  const n = await l7Mesh(t, {
    h1: (name, req, res) => {
      seenPaths.push(req.url ?? '');
      res.end(name);
    },
    route: (at, req) => {
      decided.push(req.path);
      if (req.path.startsWith('/admin')) return { kind: 'reject', route: undefined, status: 404, grpcStatus: 12, reason: 'no rule matched', responseHeaders: [] };
      return {
        kind: 'forward', route: undefined, backend: { serviceKey: at.service.key, port: at.port.port }, requestHeaders: [], responseHeaders: [],
        rewrite: undefined, mirrors: [], requestTimeoutMs: undefined, backendRequestTimeoutMs: undefined,
      };
    },
  });
  const client = h1Client(n);
  t.after(() => client.destroy());
  for (const sneaky of ['/public/../admin', '/%61dmin', '/public/%2e%2e/admin/x']) {
    const r = await client.request({ path: sneaky, method: 'GET' });
    assert.equal(r.statusCode, 404, `${sneaky} is matched as /admin...`);
    await r.body.text();
  }
  const ok = await client.request({ path: '/a/./b/../c?q=/../x', method: 'GET' });
  assert.equal(ok.statusCode, 200);
  await ok.body.text();
  assert.deepEqual(seenPaths, ['/a/c?q=/../x'], 'the backend sees the path that was matched, the query untouched');
  assert.deepEqual(decided, ['/admin', '/admin', '/admin/x', '/a/c?q=/../x']);

  const raw = await n.dial(80);
  t.after(() => raw.destroy());
  raw.write('GET /a%zz HTTP/1.1\r\nhost: web.shop\r\n\r\n');
  const reply = await readUntil(raw, (text) => text.includes('\r\n\r\n'));
  assert.match(reply, /^HTTP\/1\.1 400 /);
  await until(() => n.requests.records.some((r) => r.outcome?.flags === ResponseFlags.BAD_REQUEST), 3000, 'a BR record');
  assert.equal(decided.length, 4, 'a refused target is never routed');
});

test('RequestMirror: the mirror gets a copy with its body; a body over the 64 KiB kept for copies is not mirrored, and that is counted', async (t) => {
  const seen: { path: string; body: string }[] = [];
  const outcomes: string[] = [];
  const n = await l7Mesh(t, {
    h1: (name, req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        const body = Buffer.concat(parts);
        seen.push({ path: req.url ?? '', body: body.length > 100 ? `${body.length} bytes` : body.toString() });
        res.end(name);
      });
    },
    route: (at) => ({
      kind: 'forward', route: undefined, backend: { serviceKey: at.service.key, port: at.port.port }, requestHeaders: [], responseHeaders: [],
      rewrite: undefined, mirrors: [{ serviceKey: at.service.key, port: at.port.port }], requestTimeoutMs: undefined, backendRequestTimeoutMs: undefined,
    }),
    mirrored: (service, outcome) => outcomes.push(`${service} ${outcome}`),
  });
  const client = h1Client(n);
  t.after(() => client.destroy());
  for (const [path, body] of [['/get', undefined], ['/post', 'mirror me'], ['/big', randomBytes(100 * 1024)]] as const) {
    const r = await client.request({ path, method: body === undefined ? 'GET' : 'POST', body });
    assert.equal(r.statusCode, 200);
    await r.body.text();
  }
  await until(() => seen.length >= 5, 3000, 'the primaries and two mirror copies');
  await new Promise((resolve) => setTimeout(resolve, 200));
  const at = (path: string) => seen.filter((s) => s.path === path).map((s) => s.body);
  assert.deepEqual(at('/get'), ['', ''], 'a bodiless request and its copy');
  assert.deepEqual(at('/post'), ['mirror me', 'mirror me'], 'the copy carries the body whole');
  assert.deepEqual(at('/big'), [`${100 * 1024} bytes`], 'a 100 KiB body reaches the backend but is not mirrored');
  assert.deepEqual(outcomes, ['shop/web sent', 'shop/web sent', 'shop/web skipped_body']);
});
