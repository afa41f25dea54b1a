// The HTTP layer's pooled pod sockets (issue 16, points 3 and 5): each one the pools open takes
// a descriptor from the connection caps, charged to the client's address, and is refused
// before any connect once the caps are reached (503, flag OL, the endpoint not blamed); a
// socket's descriptor comes back when it closes or its connect fails. On the destination side
// the pod socket a tunnel stream came with lingers 0 while it serves (a dying agent resets it)
// and closes with a FIN when the layer closes it.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';

import { pino } from 'pino';
import { Registry } from 'prom-client';

import { isWeftError } from '../../../src/core/errors.ts';
import { ConnectionCaps } from '../../../src/proxy/connection-caps.ts';
import { classifyConnectFailure } from '../../../src/proxy/connect-failure.ts';
import { ProxyErrors, proxyError } from '../../../src/proxy/errors.ts';
import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { PodSockets } from '../../../src/proxy/http/pod-sockets.ts';
import type { SocketCloser } from '../../../src/proxy/splice.ts';
import { UpstreamConnector, type ReachableHop, type UpstreamStream } from '../../../src/proxy/upstream.ts';
import { OverloadTelemetry } from '../../../src/telemetry/overload-telemetry.ts';
import { until, workload } from './harness.ts';
import { l7Mesh, readUntil } from './l7-harness.ts';
import { parseMetrics } from './metrics-text.ts';

const CLIENT = '127.0.1.10';

test('classifyConnectFailure: a refusal by the caps stops with OL, blaming no endpoint', () => {
  const f = classifyConnectFailure({ error: proxyError(ProxyErrors.OVERLOADED, 'source full'), drained: false, clientGone: false });
  assert.deepEqual(f, { kind: 'stop', ending: [ResponseFlags.OVERLOADED, 'source full'], security: 'unknown' });
});

test('pooled pod sockets take descriptors from the caps, are refused before connecting past them, give them back on close and on failure', { timeout: 10_000 }, async (t) => {
  let accepted = 0;
  const serverSide = new Set<Socket>();
  const server = createServer((s) => {
    accepted++;
    serverSide.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of serverSide) s.destroy();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const caps = new ConnectionCaps({ globalFds: 100, perSourceFds: 2 });
  const tunnelled = new EventEmitter();
  const sockets = new PodSockets({
    connect: (r) => r.hop.kind === 'direct' ? new UpstreamConnector({ open: () => Promise.reject(new Error('no tunnel')) }).connect(r) : Promise.resolve(tunnelled as UpstreamStream),
  }, { allowance: caps });
  const pod = workload('web-1', 'shop', '127.0.0.1', 'a');
  const direct = (p: number): ReachableHop => ({ kind: 'direct', target: { ip: '127.0.0.1', port: p, workload: pod } } as unknown as ReachableHop);
  const request = (hop: ReachableHop) => ({ hop, sourceIdentity: 'spiffe://cluster.local/ns/shop/sa/client', clientIp: CLIENT });

  const a = await sockets.connect(request(direct(port))) as Socket;
  const b = await sockets.connect(request(direct(port))) as Socket;
  t.after(() => {
    a.destroy();
    b.destroy();
  });
  assert.equal(sockets.charged, 2);
  assert.equal(sockets.held, 2);
  assert.equal(caps.held, 2);
  await assert.rejects(sockets.connect(request(direct(port))), (err: unknown) => isWeftError(err, ProxyErrors.OVERLOADED)
    && /source 127\.0\.1\.10 holds 2 of its 2 connection descriptors/.test(err.message));
  await until(() => accepted === 2, 2000, 'two accepted');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(accepted, 2, 'the refused one never connected');

  a.destroy();
  await until(() => sockets.charged === 1 && caps.held === 1, 2000, 'the closed socket gave its descriptor back');
  const c = await sockets.connect(request(direct(port))) as Socket;
  t.after(() => c.destroy());
  assert.equal(caps.held, 2);
  c.destroy();
  await until(() => caps.held === 1, 2000, 'given back');

  // A connect that fails gives its descriptor back at once.
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const deadPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  await assert.rejects(sockets.connect(request(direct(deadPort))), (err: unknown) => isWeftError(err, ProxyErrors.CONNECT_FAILED));
  assert.equal(caps.held, 1);

  // A tunnel stream holds no descriptor of its own (its session does, counted elsewhere).
  const tunnelHop = { kind: 'tunnel', target: { ip: '127.0.4.1', port: 80, workload: pod }, nodeAddress: '127.0.0.2', workload: pod } as unknown as ReachableHop;
  assert.equal(await sockets.connect(request(tunnelHop)), tunnelled);
  assert.equal(caps.held, 1);
  assert.equal(sockets.charged, 1);
});

test('through the layer: past a pod\'s share the next pooled connection is refused with 503 OL; the others are served', { timeout: 30_000 }, async (t) => {
  const held: ServerResponse[] = [];
  const caps = new ConnectionCaps({ globalFds: 100, perSourceFds: 2 });
  const registry = new Registry();
  caps.observe(new OverloadTelemetry({ registry, logger: pino({ level: 'silent' }) }));
  const n = await l7Mesh(t, {
    descriptors: caps,
    h1: (name, _req: IncomingMessage, res) => {
      held.push(res);
      res.setHeader('x-backend', name);
    },
  });
  const web1 = n.backends[0];
  assert.ok(web1 !== undefined);
  const dst = { address: web1.pod.ip ?? '', port: web1.port };
  // Three requests at once from one pod to one pod of this node: each needs its own pooled connection.
  const clients = await Promise.all([0, 1, 2].map(() => n.dialTo(dst)));
  t.after(() => { for (const s of clients) s.destroy(); });
  const answers = clients.map((s) => readUntil(s, (x) => /\r\n\r\n/.test(x) && /content-length: 0|\r\n\r\n.+/s.test(x), 10_000));
  for (const [i, s] of clients.entries()) {
    s.write(`GET /${i} HTTP/1.1\r\nhost: ${dst.address}\r\n\r\n`);
    // One at a time, so the first two take the two descriptors.
    if (i < 2) await until(() => held.length === i + 1, 5000, `request ${i} reached the pod`);
  }
  const third = await answers[2];
  assert.match(third, /^HTTP\/1\.1 503 /);
  assert.equal(held.length, 2, 'the third never reached the pod');
  assert.deepEqual(n.layer.podSockets, { charged: 2, held: 2 });
  await until(() => n.requests.records.some((r) => r.outcome?.flags === ResponseFlags.OVERLOADED), 3000, 'recorded');
  const refused = n.requests.records.find((r) => r.outcome?.flags === ResponseFlags.OVERLOADED);
  assert.match(String(refused?.outcome?.detail), /source 127\.0\.1\.10 holds 2 of its 2 connection descriptors/);
  const counted = parseMetrics(await registry.metrics()).filter((x) => x.name === 'weft_proxy_connections_refused_total');
  assert.deepEqual(counted.map((x) => [x.labels.listener, x.labels.cap, x.value]), [['http-pool', 'source', 1]], 'the refusal is counted');
  for (const res of held) res.end('ok');
  for (const a of answers.slice(0, 2)) assert.match(await a, /^HTTP\/1\.1 200 [\s\S]*ok$/);
  n.layer.destroy();
  await until(() => caps.held === 0 && n.layer.podSockets.held === 0, 3000, 'every descriptor given back');
});

test('destination side: the pod socket a tunnel stream came with lingers 0 while it serves, and the layer\'s own close is a FIN', { timeout: 30_000 }, async (t) => {
  const calls = new Map<number, string[]>();
  const note = (s: Socket, what: string): void => {
    const key = s.localPort ?? -1;
    calls.set(key, [...(calls.get(key) ?? []), what]);
  };
  const closer: SocketCloser = { resetOnClose: (s) => note(s, 'reset'), finOnClose: (s) => note(s, 'fin') };
  let podSide: { port: number; during: string[]; ended: Promise<string> } | undefined;
  const n = await l7Mesh(t, {
    destinationCloser: closer,
    h1: (name, req, res) => {
      const socket = req.socket;
      const port = socket.remotePort ?? -1;
      podSide = {
        port,
        during: [...(calls.get(port) ?? [])],
        ended: new Promise((resolve) => {
          socket.once('end', () => resolve('FIN'));
          socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        }),
      };
      res.setHeader('x-backend', name);
      res.end('ok');
    },
  });
  const web3 = n.backends[2];
  assert.ok(web3 !== undefined && web3.pod.node === 'b');
  const s = await n.dialTo({ address: web3.pod.ip ?? '', port: web3.port });
  t.after(() => s.destroy());
  s.write(`GET / HTTP/1.1\r\nhost: ${web3.pod.ip}\r\n\r\n`);
  assert.match(await readUntil(s, (x) => x.endsWith('ok')), /^HTTP\/1\.1 200 /);
  assert.ok(podSide !== undefined);
  assert.deepEqual(podSide.during, ['reset'], 'serving, the pod socket lingered 0 (a dying agent resets it)');
  // Node a drops its pooled tunnel stream: the stream ends, node b's layer closes the pod socket itself.
  s.destroy();
  n.layer.destroy();
  assert.equal(await podSide.ended, 'FIN', 'the pod saw a FIN');
  assert.equal(calls.get(podSide.port)?.at(-1), 'fin', 'lingering off before the layer\'s close');
});
