// The outbound listener's decisions on a single node: same-node pods are reached straight,
// unknown destinations pass through or are refused, a dead endpoint is skipped and ejected,
// unknown sources and services without endpoints are refused, each with its record.

import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';

import { ManualClock } from '../../../src/core/clock.ts';
import type { ConnectionDescription, ConnectionObserver } from '../../../src/proxy/contracts.ts';
import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { endpointKey } from '../../../src/proxy/load-balancer.ts';
import { OutboundListener, type OutboundDeps, type OutboundOptions } from '../../../src/proxy/outbound.ts';
import { ConcurrencyLimits, counterMemory } from '../../../src/proxy/resilience/concurrency-limit.ts';
import { TunnelPool } from '../../../src/proxy/tunnel-pool.ts';
import { UpstreamHealth } from '../../../src/proxy/upstream-health.ts';
import {
  OriginalDestinations, TestMesh, allowAll, closure, dialCaptured, echoServer, endpoint, exchange, service, testCredentials, until,
  workload,
} from './harness.ts';

interface Recorded {
  description?: ConnectionDescription;
  flags?: string;
  detail?: string;
}

/** An observer that keeps what it is told, to check the record of each connection. */
function recorder(): ConnectionObserver & { records: Recorded[] } {
  const records: Recorded[] = [];
  return {
    records,
    open: () => {
      const r: Recorded = {};
      records.push(r);
      return {
        identify: (d) => {
          assert.equal(r.description, undefined, 'identify called twice');
          r.description = d;
        },
        countBytes: () => undefined,
        finish: (flags, detail) => {
          assert.equal(r.flags, undefined, 'finish called twice');
          r.flags = flags;
          r.detail = detail;
        },
      };
    },
    handshakeFailed: () => undefined,
  };
}

async function oneNode(t: TestContext, options: Partial<OutboundOptions> = {}, extra: Partial<OutboundDeps> = {}) {
  const mesh = new TestMesh();
  const client = mesh.addWorkload(workload('client', 'shop', '127.0.1.10', 'a'));
  const web1 = mesh.addWorkload(workload('web-7d9f8c6b5-x2x4k', 'shop', '127.0.3.1', 'a', { labels: { app: 'web' } }));
  const web2 = mesh.addWorkload(workload('web-7d9f8c6b5-q7z9b', 'shop', '127.0.3.2', 'a', { labels: { app: 'web' } }));
  const echo1 = await echoServer('127.0.3.1');
  const echo2 = await echoServer('127.0.3.2');
  // A port nothing listens on: bind, note, close.
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.3.2', r));
  const deadPort = (dead.address() as AddressInfo).port;
  await new Promise<void>((r) => dead.close(() => r()));

  const clock = new ManualClock();
  const health = new UpstreamHealth(clock);
  const table = new OriginalDestinations();
  const observer = recorder();
  const pool = new TunnelPool({ credentials: testCredentials([client.identity]) });
  const outbound = new OutboundListener({
    originalDestination: table.reader, mesh, authorize: allowAll, tunnels: pool, health, observer, random: () => 0, ...extra,
  }, { nodeName: 'a', host: '127.0.0.1', port: 0, ...options });
  const address = await outbound.listen();
  t.after(async () => {
    await outbound.destroy();
    pool.destroy();
    await echo1.close();
    await echo2.close();
  });
  return {
    mesh, client, web1, web2, echo1, echo2, deadPort, clock, health, observer, outbound, pool,
    dial: (dst: { address: string; port: number }, from = client.ip ?? '') => dialCaptured(address, from, dst, table),
  };
}

test('a pod on the same node is reached straight, without a tunnel', async (t) => {
  const n = await oneNode(t);
  const back = await exchange(await n.dial({ address: '127.0.3.1', port: n.echo1.address.port }), Buffer.from('hi'));
  assert.equal(back.toString(), 'hi');
  await until(() => n.observer.records[0]?.flags !== undefined, 3000, 'record');
  const r = n.observer.records[0];
  assert.equal(r?.flags, ResponseFlags.OK);
  assert.equal(r?.description?.security, 'none');
  assert.equal(r?.description?.destination.workload, 'web');
  assert.equal(r?.description?.source.principal, n.client.identity);
  assert.equal(n.pool.stats().sessions, 0);
});

test('a dead endpoint is skipped for a live one, and ejected after five failures', async (t) => {
  const n = await oneNode(t);
  n.mesh.addService(service('web', 'shop', '198.18.10.2', 80, 0), [
    endpoint(n.web2, n.deadPort), endpoint(n.web1, n.echo1.address.port),
  ]);
  const deadKey = endpointKey({ ip: '127.0.3.2', port: n.deadPort });
  for (let i = 0; i < 5; i++) {
    // random() = 0 always draws the dead endpoint first; the connection still succeeds.
    const back = await exchange(await n.dial({ address: '198.18.10.2', port: 80 }), Buffer.from(`try ${i}`));
    assert.equal(back.toString(), `try ${i}`);
  }
  assert.equal(n.health.ejected(deadKey), true);
  await until(() => n.observer.records.every((r) => r.flags !== undefined), 3000, 'records');
  assert.deepEqual(n.observer.records.map((r) => r.flags), Array(5).fill(ResponseFlags.OK));
  n.clock.advance(30_000);
  assert.equal(n.health.ejected(deadKey), false);
});

test('when every endpoint fails the client is reset and the record says UF', async (t) => {
  const n = await oneNode(t);
  n.mesh.addService(service('web', 'shop', '198.18.10.3', 80, 0), [endpoint(n.web2, n.deadPort)]);
  const s = await n.dial({ address: '198.18.10.3', port: 80 });
  assert.equal(await closure(s), 'ECONNRESET');
  await until(() => n.observer.records[0]?.flags !== undefined, 3000, 'record');
  assert.equal(n.observer.records[0]?.flags, ResponseFlags.UPSTREAM_CONNECT_FAILURE);
  assert.match(n.observer.records[0]?.detail ?? '', /ECONNREFUSED/);
});

test('refusals: no endpoints (UH), unknown source (NR), unknown destination without passthrough (NR), not captured (NR)', async (t) => {
  const n = await oneNode(t, { passthroughUnknown: false });
  n.mesh.addService(service('empty', 'shop', '198.18.10.4', 80, 0), []);
  const outsider = await echoServer('127.0.4.1');
  t.after(() => outsider.close());
  const cases: Array<[() => Promise<import('node:net').Socket>, string]> = [
    [() => n.dial({ address: '198.18.10.4', port: 80 }), ResponseFlags.NO_HEALTHY_UPSTREAM],
    [() => n.dial({ address: '127.0.3.1', port: n.echo1.address.port }, '127.0.9.9'), ResponseFlags.NO_ROUTE],
    [() => n.dial({ address: '127.0.4.1', port: outsider.address.port }), ResponseFlags.NO_ROUTE],
  ];
  for (const [dial, want] of cases) {
    const before = n.observer.records.length;
    assert.equal(await closure(await dial()), 'ECONNRESET');
    await until(() => n.observer.records[before]?.flags !== undefined, 3000, 'record');
    assert.equal(n.observer.records[before]?.flags, want);
  }
});

test('an unknown destination passes through when allowed', async (t) => {
  const n = await oneNode(t);
  const outsider = await echoServer('127.0.4.1');
  t.after(() => outsider.close());
  const back = await exchange(await n.dial({ address: '127.0.4.1', port: outsider.address.port }), Buffer.from('out'));
  assert.equal(back.toString(), 'out');
});

test('a connection with no original destination, or addressed to the proxy itself, is refused', async (t) => {
  const n = await oneNode(t);
  const readers: Array<[(s: import('node:net').Socket) => { address: string; port: number } | undefined, RegExp]> = [
    [() => undefined, /no original destination/],
    [(s) => ({ address: s.localAddress ?? '', port: s.localPort ?? 0 }), /not captured/],
  ];
  for (const [reader, detail] of readers) {
    const listener = new OutboundListener({
      originalDestination: reader, mesh: n.mesh, authorize: allowAll, tunnels: n.pool, health: n.health, observer: n.observer,
    }, { nodeName: 'a', host: '127.0.0.1', port: 0 });
    const address = await listener.listen();
    t.after(() => listener.destroy());
    const before = n.observer.records.length;
    // Refused so fast that the reset may beat the client's own 'connect' event.
    assert.equal(await closure(connect({ host: address.address, port: address.port, localAddress: '127.0.1.10' })), 'ECONNRESET');
    await until(() => n.observer.records[before]?.flags !== undefined, 3000, 'record');
    assert.equal(n.observer.records[before]?.flags, ResponseFlags.NO_ROUTE);
    assert.match(n.observer.records[before]?.detail ?? '', detail);
  }
});

test('DestinationPolicy maxConnections on opaque TCP: over the limit a connection is refused at once (UO); a closed one gives its place back', async (t) => {
  const limits = new ConcurrencyLimits(counterMemory(64));
  const n = await oneNode(t, {}, {
    connectionPool: (key) => (key === 'shop/web' ? limits.tryAcquire(`connections|${key}`, 2) ?? { overflow: `${key}: 2 connections at most` } : undefined),
  });
  n.mesh.addService(service('web', 'shop', '198.18.10.9', 80, 0), [endpoint(n.web1, n.echo1.address.port)]);
  const a = await n.dial({ address: '198.18.10.9', port: 80 });
  const b = await n.dial({ address: '198.18.10.9', port: 80 });
  // Both held open: each has echoed once.
  const echoOnce = (s: Socket, text: string): Promise<string> => new Promise((resolve) => {
    s.once('data', (d: Buffer) => resolve(d.toString()));
    s.write(text);
  });
  assert.equal(await echoOnce(a, 'a'), 'a');
  assert.equal(await echoOnce(b, 'b'), 'b');
  assert.equal(limits.inUse('connections|shop/web'), 2);
  const c = await n.dial({ address: '198.18.10.9', port: 80 });
  // Refused as a failed connect is: the client sees its connection reset.
  const closed = await new Promise<string>((resolve) => {
    c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    c.once('close', () => resolve('closed'));
  });
  assert.match(closed, /ECONNRESET|closed/);
  await until(() => n.observer.records.some((r) => r.flags === ResponseFlags.UPSTREAM_OVERFLOW), 3000, 'UO record');
  assert.match(n.observer.records.find((r) => r.flags === ResponseFlags.UPSTREAM_OVERFLOW)?.detail ?? '', /2 connections at most/);
  a.destroy();
  await until(() => limits.inUse('connections|shop/web') === 1, 3000, 'released');
  assert.equal((await exchange(await n.dial({ address: '198.18.10.9', port: 80 }), Buffer.from('d'))).toString(), 'd');
  b.destroy();
});
