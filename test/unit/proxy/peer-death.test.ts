// No leaks when a peer agent dies (issue 16, point 4), on loopback: the tunnel connection of
// one side is closed at the TCP level with no TLS close_notify and no GOAWAY, as the kernel
// closes the sockets of a process killed with SIGKILL. The pod (or client) on the other side
// must be reset, never given a clean FIN, and the connection recorded: opened minus closed is
// what is really open. Plus the idle timeout of half-closed connections.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Socket as NetSocket, type Socket } from 'node:net';

import { nativeAddon } from '../../../src/core/native-addon.ts';
import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { closure, exchange, until } from './harness.ts';
import { parseMetrics } from './metrics-text.ts';
import { twoNodes, type TwoNodes } from './two-nodes.ts';

/**
 * Destroys the tunnel connections `pick` selects without a TLS close_notify or a GOAWAY: the
 * other side sees what a killed agent's kernel leaves, a bare FIN.
 */
function killTunnelSockets(pick: (s: Socket) => boolean, how: 'FIN' | 'RST' = 'FIN'): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  const victims = handles.filter((h): h is Socket => h instanceof NetSocket && pick(h));
  for (const s of victims) {
    // A killed process's kernel resets a socket that still has unread data: linger 0, then close.
    if (how === 'RST') {
      const addon = nativeAddon();
      const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (addon instanceof Error || fd === undefined) throw new Error('cannot reset the tunnel socket: no native addon or fd');
      addon.setLinger(fd, 0);
    }
    s.destroy();
  }
  return victims.length;
}

/**
 * A tunnel socket, seen from the source agent (its remote end is the inbound listener) or the
 * destination agent (its local end is). The address counts too: a client bound to another
 * loopback address can be given the listener's port number as its own ephemeral port.
 */
function isTunnelSocket(s: Socket, n: TwoNodes, end: 'local' | 'remote'): boolean {
  const { address, port } = n.inboundAddress;
  return end === 'local' ? s.localPort === port && s.localAddress === address : s.remotePort === port && s.remoteAddress === address;
}

/** A pod that sends without end and never reads fast: windows and buffers stay full. */
function flooder(pods: Socket[]) {
  return (s: Socket): void => {
    pods.push(s);
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = (): void => {
      while (!s.destroyed && s.write(chunk)) { /* fill */ }
    };
    s.on('drain', pump);
    pump();
  };
}

async function openedMinusClosed(n: TwoNodes, reporter: 'source' | 'destination'): Promise<number> {
  const samples = parseMetrics(await n.registry.metrics());
  const sum = (name: string): number => samples.filter((x) => x.name === name && x.labels.reporter === reporter).reduce((a, x) => a + x.value, 0);
  return sum('istio_tcp_connections_opened_total') - sum('istio_tcp_connections_closed_total');
}

for (const how of ['FIN', 'RST'] as const) test(`the source agent dies mid-download (its kernel sends ${how}): the destination pod is reset (not FIN), the stream recorded, nothing held`, async (t) => {
  const pods: Socket[] = [];
  const n = await twoNodes(t, { echo: flooder(pods) });
  const clients = await Promise.all([n.dial(), n.dial(), n.dial()]);
  for (const c of clients) c.pause();
  await until(() => pods.length === 3 && n.inbound.stats().streams === 3, 3000, 'three streams');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await openedMinusClosed(n, 'destination'), 3);
  const podEnds = pods.map((p) => new Promise<string>((resolve) => {
    let how = 'closed';
    p.once('end', () => { how = 'FIN'; });
    p.once('error', (e: NodeJS.ErrnoException) => { how = e.code ?? e.message; });
    p.once('close', () => resolve(how));
  }));
  assert.equal(killTunnelSockets((s) => isTunnelSocket(s, n, 'remote'), how), 1, 'one pooled session');
  const t0 = Date.now();
  assert.deepEqual(await Promise.all(podEnds), ['ECONNRESET', 'ECONNRESET', 'ECONNRESET'], 'every pod saw a reset');
  assert.ok(Date.now() - t0 < 2000, `pods reset after ${Date.now() - t0} ms`);
  await until(() => n.inbound.stats().streams === 0 && n.inbound.stats().sessions === 0, 3000, 'streams and session gone');
  assert.equal(await openedMinusClosed(n, 'destination'), 0, 'opened - closed = really open (0)');
  const lines = n.logLines.filter((l) => l.msg === 'connection' && l.reporter === 'destination');
  assert.equal(lines.length, 3);
  for (const l of lines) assert.notEqual(l.flags, ResponseFlags.OK, `recorded as broken: ${JSON.stringify(l)}`);
});

test('the destination agent dies mid-download: the client is reset (not FIN), the connection recorded', async (t) => {
  const pods: Socket[] = [];
  const n = await twoNodes(t, { echo: flooder(pods) });
  const client = await n.dial();
  await until(() => pods.length === 1, 3000, 'the pod connected');
  const got = new Promise<{ how: string; bytes: number }>((resolve) => {
    let how = 'closed';
    let bytes = 0;
    client.on('data', (d: Buffer) => { bytes += d.length; });
    client.once('end', () => { how = 'FIN'; });
    client.once('error', (e: NodeJS.ErrnoException) => { how = e.code ?? e.message; });
    client.once('close', () => resolve({ how, bytes }));
  });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(killTunnelSockets((s) => isTunnelSocket(s, n, 'local')), 1);
  const end = await got;
  assert.equal(end.how, 'ECONNRESET', `the client saw ${end.how} after ${end.bytes} bytes`);
  await until(() => n.outbound.connections === 0, 3000, 'the outbound connection recorded');
  assert.equal(await openedMinusClosed(n, 'source'), 0);
  assert.equal(n.pool.stats().sessions, 0, 'the dead session left the pool');
  // And the pool dials a fresh session for the next connection.
  const next = await n.dial();
  next.resume();
  await until(() => pods.length === 2, 3000, 'a new connection goes through');
  next.resetAndDestroy();
});

test('half-closed idle timeout: the other direction idle for halfClosedIdleMs resets both sides', async (t) => {
  let podClosed: Promise<string> | undefined;
  const n = await twoNodes(t, {
    // The pod reads the request and answers only much later (a reset reaches it when it writes).
    echo: (s) => {
      podClosed = closure(s);
      s.once('end', () => setTimeout(() => s.write('too late'), 1000));
    },
    splice: { halfClosedIdleMs: 300 },
  });
  const s = await n.dial();
  const closed = closure(s);
  const t0 = Date.now();
  s.end('request, then FIN');
  assert.equal(await closed, 'ECONNRESET', 'the client is reset');
  const waited = Date.now() - t0;
  assert.ok(podClosed !== undefined);
  assert.match(await podClosed, /^(ECONNRESET|EPIPE)$/, 'the pod finds its connection reset');
  assert.ok(waited >= 300 && waited < 3000, `reset after ${waited} ms`);
  await until(() => n.outbound.connections === 0 && n.inbound.connections === 0, 3000, 'recorded');
  const flags = n.logLines.filter((l) => l.msg === 'connection').map((l) => `${String(l.reporter)}:${String(l.flags)}`).sort();
  // Each side timed out by itself, or learned of the other's reset first.
  assert.ok(flags.length === 2 && flags.some((f) => f.endsWith(`:${ResponseFlags.IDLE_TIMEOUT}`)), `flags ${flags.join(',')}`);
  assert.equal(await openedMinusClosed(n, 'source') + await openedMinusClosed(n, 'destination'), 0);
  // Traffic keeps a half-closed connection alive.
  let chatty: Socket | undefined;
  const m = await twoNodes(t, {
    echo: (p) => {
      chatty = p;
      p.resume();
    },
    splice: { halfClosedIdleMs: 300 },
  });
  const c = await m.dial();
  c.end('bye');
  const got: Buffer[] = [];
  c.on('data', (d: Buffer) => got.push(d));
  await until(() => chatty !== undefined, 3000, 'pod');
  for (let i = 0; i < 8; i++) {
    chatty?.write(`tick ${i}\n`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const done = closure(c);
  chatty?.end('done\n');
  assert.equal(await done, 'closed', 'a clean close after 800 ms of 100 ms ticks');
  assert.match(Buffer.concat(got).toString(), /tick 7\ndone\n$/);
});

test('after every fault opened - closed equals what is open, and sockets are released', async (t) => {
  const n = await twoNodes(t);
  const s = await n.dial();
  assert.equal((await exchange(s, Buffer.from('hi'))).toString(), 'hi');
  await until(() => n.outbound.connections === 0, 3000, 'closed');
  assert.equal(await openedMinusClosed(n, 'source'), 0);
  assert.equal(await openedMinusClosed(n, 'destination'), 0);
});
