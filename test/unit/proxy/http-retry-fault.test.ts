// The retry and fault steps in the HTTP layer on the loopback mesh (real sockets, real
// undici clients): a rule's retry hides every other 503; only requests that are safe and
// possible to replay are retried (GET; PUT with a body within 64 KiB, sent whole again; not
// POST, not a 100 KiB PUT); the retry budget caps retries and the record says URX; a
// FaultInjection's 50% abort hits exactly half of 100 requests (FI) and never reaches the
// backend; its delay holds a request (DI); a missing FaultInjection fails closed with 500.

import assert from 'node:assert/strict';
import { connect as h2connect, type IncomingHttpHeaders } from 'node:http2';
import { test } from 'node:test';

import { Client } from 'undici';

import { systemClock } from '../../../src/core/clock.ts';
import type { FaultInjectionObject } from '../../../src/model/traffic-policy-types.ts';
import type { Forward, RouteDecider } from '../../../src/proxy/http/contracts.ts';
import { faultStep } from '../../../src/proxy/http/fault-step.ts';
import { retryStep } from '../../../src/proxy/http/retry-step.ts';
import { RetryBudget } from '../../../src/proxy/resilience/retry-budget.ts';
import { until } from './harness.ts';
import { l7Mesh, type L7Mesh } from './l7-harness.ts';

function h1Client(n: L7Mesh): Client {
  return new Client('http://web.shop', {
    pipelining: 1,
    connect: (_o, cb) => {
      n.dial(80).then((s) => cb(null, s), (e: Error) => cb(e, null));
    },
  });
}

const ROUTE = { kind: 'HTTPRoute', namespace: 'shop', name: 'r', rule: 0 };

function routeWith(extra: Partial<Forward>): RouteDecider {
  return (at) => ({
    kind: 'forward', route: ROUTE, backend: { serviceKey: at.service.key, port: at.port.port }, requestHeaders: [], responseHeaders: [],
    rewrite: undefined, mirrors: [], requestTimeoutMs: undefined, backendRequestTimeoutMs: undefined, ...extra,
  });
}

/** Backends sharing one counter: 503 on the 1st, 3rd, ... request (or on all), answering how many body bytes came. */
function flaky(all = false): { hits: () => number; h1: NonNullable<Parameters<typeof l7Mesh>[1]>['h1'] } {
  let hits = 0;
  return {
    hits: () => hits,
    h1: (_name, req, res) => {
      let bytes = 0;
      req.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      req.on('end', () => {
        hits += 1;
        res.statusCode = all || hits % 2 === 1 ? 503 : 200;
        res.end(String(bytes));
      });
    },
  };
}

async function send(c: Client, method: string, n: number, body?: Buffer): Promise<{ statuses: Record<number, number>; bodies: Set<string> }> {
  const statuses: Record<number, number> = {};
  const bodies = new Set<string>();
  for (let i = 0; i < n; i++) {
    const r = await c.request({ path: '/x', method, body });
    statuses[r.statusCode] = (statuses[r.statusCode] ?? 0) + 1;
    bodies.add(await r.body.text());
  }
  return { statuses, bodies };
}

test('retry: every other 503 hidden for GET and a buffered PUT; POST and a 100 KiB PUT are not retried', async (t) => {
  const backend = flaky();
  const budget = new RetryBudget(systemClock, { retryRatio: 1, minRetriesPerSecond: 100, ttlMs: 10_000 });
  const n = await l7Mesh(t, {
    h1: backend.h1,
    route: routeWith({ retry: { attempts: 2, codes: [503], backoffMs: 1 } }),
    steps: [retryStep({ budgetFor: () => budget })],
  });
  const c = h1Client(n);
  t.after(() => c.destroy());
  assert.deepEqual((await send(c, 'GET', 10)).statuses, { 200: 10 });
  assert.equal(backend.hits(), 20);
  const put = await send(c, 'PUT', 10, Buffer.alloc(1024, 1));
  assert.deepEqual(put.statuses, { 200: 10 });
  assert.deepEqual([...put.bodies], ['1024'], 'each retry carried the whole body');
  assert.deepEqual((await send(c, 'POST', 10, Buffer.alloc(1024, 1))).statuses, { 200: 5, 503: 5 });
  assert.deepEqual((await send(c, 'PUT', 10, Buffer.alloc(100 * 1024, 1))).statuses, { 200: 5, 503: 5 }, 'past 64 KiB the body is not kept');
  await until(() => n.requests.records.filter((x) => x.outcome !== undefined).length === 40, 3000, 'records');
  assert.deepEqual(n.requests.records.slice(0, 20).map((x) => x.outcome?.retries), Array.from({ length: 20 }, () => 1));
});

test('retry budget: with every attempt failing, retries stay within the budget; the last answer carries URX', async (t) => {
  const backend = flaky(true);
  const budget = new RetryBudget(systemClock, { retryRatio: 0.2, minRetriesPerSecond: 0, ttlMs: 10_000 });
  let exhausted = 0;
  const n = await l7Mesh(t, {
    h1: backend.h1,
    route: routeWith({ retry: { attempts: 3, codes: [503], backoffMs: 1 } }),
    steps: [retryStep({ budgetFor: () => budget, budgetExhausted: () => exhausted++ })],
  });
  const c = h1Client(n);
  t.after(() => c.destroy());
  assert.deepEqual((await send(c, 'GET', 50)).statuses, { 503: 50 });
  assert.equal(backend.hits() - 50, 10, '20% of 50 requests');
  assert.equal(exhausted, 50, 'every request ended on a refusal (the 10 retried ones after their one retry)');
  await until(() => n.requests.records.filter((x) => x.outcome !== undefined).length === 50, 3000, 'records');
  assert.ok(n.requests.records.every((x) => x.outcome?.flags === 'URX'), JSON.stringify(n.requests.records[0]?.outcome));
});

test('fault injection: a 50% abort hits 50 of 100 requests (FI, never at the backend); a delay holds (DI); a missing one fails closed', async (t) => {
  let hits = 0;
  const faults: Record<string, FaultInjectionObject> = {
    'shop/half': { kind: 'FaultInjection', name: 'half', namespace: 'shop', abort: { httpStatus: 503, percentage: 50 } },
    'shop/slow': { kind: 'FaultInjection', name: 'slow', namespace: 'shop', delay: { fixedDelayMs: 150, percentage: 100 } },
  };
  const n = await l7Mesh(t, {
    h1: (_name, _req, res) => {
      hits += 1;
      res.end('ok');
    },
    route: (at, req) => routeWith({ faults: [req.path === '/slow' ? 'shop/slow' : req.path === '/gone' ? 'shop/gone' : 'shop/half'] })(at, req),
    steps: [faultStep({ fault: (k) => faults[k] }), retryStep({ budgetFor: () => new RetryBudget(systemClock) })],
  });
  const c = h1Client(n);
  t.after(() => c.destroy());
  const r = await send(c, 'GET', 100);
  assert.ok(Math.abs((r.statuses[503] ?? 0) - 50) <= 1, JSON.stringify(r.statuses));
  assert.equal(hits, r.statuses[200]);
  const t0 = performance.now();
  const slow = await c.request({ path: '/slow', method: 'GET' });
  assert.equal(slow.statusCode, 200);
  await slow.body.text();
  assert.ok(performance.now() - t0 >= 140, 'held for the delay');
  const gone = await c.request({ path: '/gone', method: 'GET' });
  assert.equal(gone.statusCode, 500);
  await gone.body.text();
  await until(() => n.requests.records.filter((x) => x.outcome !== undefined).length === 102, 3000, 'records');
  const flags = n.requests.records.map((x) => x.outcome?.flags);
  assert.equal(flags.filter((f) => f === 'FI').length, r.statuses[503]);
  assert.deepEqual(flags.slice(100), ['DI', 'NR']);
});

test('GRPCRoute retry (grpcCodes): every other UNAVAILABLE hidden; a status not listed is not retried', async (t) => {
  let hits = 0;
  const n = await l7Mesh(t, {
    h2: (_name, stream, headers) => {
      hits += 1;
      stream.resume();
      const fail = String(headers[':path']).endsWith('/Internal') ? '13' : hits % 2 === 1 ? '14' : undefined;
      if (fail !== undefined) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': fail }, { endStream: true });
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end();
    },
    route: routeWith({ retry: { attempts: 1, codes: [], backoffMs: 1, grpcCodes: [14] } }),
    steps: [retryStep({ budgetFor: () => new RetryBudget(systemClock, { retryRatio: 1, minRetriesPerSecond: 100, ttlMs: 10_000 }) })],
  });
  const socket = await n.dial(81);
  const session = h2connect('http://web.shop:81', { createConnection: () => socket });
  t.after(() => session.destroy());
  const call = (path: string): Promise<string | undefined> => new Promise((resolve, reject) => {
    const s = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let status: string | undefined;
    s.on('response', (h) => {
      status = h['grpc-status'] as string | undefined;
    });
    s.on('trailers', (tr: IncomingHttpHeaders) => {
      status = tr['grpc-status'] as string | undefined;
    });
    s.on('end', () => resolve(status));
    s.on('error', reject);
    s.resume();
    s.end(Buffer.alloc(5));
  });
  const codes: (string | undefined)[] = [];
  for (let i = 0; i < 10; i++) codes.push(await call('/pkg.Svc/Get'));
  assert.deepEqual(codes, Array.from({ length: 10 }, () => '0'));
  assert.equal(hits, 20);
  assert.equal(await call('/pkg.Svc/Internal'), '13');
  assert.equal(hits, 21, 'INTERNAL is not on the list');
});
