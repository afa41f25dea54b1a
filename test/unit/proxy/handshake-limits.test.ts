// Pending TLS handshakes on the tunnel port (issue 16, point 3), against a real InboundTunnel:
// caps per source address and in all, a shorter timeout under pressure, timeouts logged with
// the client's address (point 7), records with impossible lengths counted as not_tls (point 7),
// and tunnelled traffic from other addresses unaffected.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, type Socket } from 'node:net';

import { classifyHandshakeError, HandshakeReasons } from '../../../src/proxy/handshake-reasons.ts';
import { handshakeDecision, DEFAULT_HANDSHAKE_LIMITS } from '../../../src/proxy/handshake-limiter.ts';
import { exchange, until } from './harness.ts';
import { parseMetrics } from './metrics-text.ts';
import { twoNodes } from './two-nodes.ts';

const L = { ...DEFAULT_HANDSHAKE_LIMITS, maxPending: 10, maxPendingPerSource: 4, timeoutMs: 10_000, pressuredTimeoutMs: 2_000, pressureShare: 0.5 };
const decisions: [string, number, number, ReturnType<typeof handshakeDecision>][] = [
  ['calm', 0, 0, { timeoutMs: 10_000 }],
  ['just under pressure', 4, 3, { timeoutMs: 10_000 }],
  ['under pressure: the shorter timeout', 5, 0, { timeoutMs: 2_000 }],
  ['the source at its cap', 5, 4, { refuse: 'source' }],
  ['all at the cap', 10, 0, { refuse: 'global' }],
];
for (const [what, pending, fromSource, want] of decisions) {
  test(`handshakeDecision: ${what}`, () => assert.deepEqual(handshakeDecision({ pending, fromSource, limits: L }), want));
}

test('records with impossible lengths and other garbage are not_tls', () => {
  for (const code of ['ERR_SSL_DATA_LENGTH_TOO_LONG', 'ERR_SSL_EXCESSIVE_MESSAGE_SIZE', 'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_HTTP_REQUEST']) {
    assert.equal(classifyHandshakeError(Object.assign(new Error(code), { code })), HandshakeReasons.NOT_TLS, code);
  }
});

/** An idle TCP connection to the tunnel port from `localAddress`; resolves when it closes, with how long it lived. */
function idle(port: number, localAddress: string): { opened: Promise<void>; closed: Promise<number> } {
  const s: Socket = connect({ host: '127.0.0.2', port, localAddress });
  s.on('error', () => undefined);
  s.resume();
  const t0 = Date.now();
  return {
    opened: new Promise((resolve) => s.once('connect', () => resolve())),
    closed: new Promise((resolve) => s.once('close', () => resolve(Date.now() - t0))),
  };
}

test('pending handshakes: capped per address and in all, shorter timeout under pressure, tunnels from elsewhere unaffected', async (t) => {
  const n = await twoNodes(t, {
    inbound: { handshakes: { maxPending: 6, maxPendingPerSource: 3, timeoutMs: 1_500, pressuredTimeoutMs: 300, pressureShare: 0.5 } },
  });
  const port = n.inboundAddress.port;
  // A real tunnel first (from 127.0.0.1, the pool's address): its session is established.
  const before = await n.dial();
  assert.equal((await exchange(before, Buffer.from('ping'))).toString(), 'ping');

  // Five idle connections from one address: three wait for their handshake, two are closed at once.
  const flood = Array.from({ length: 5 }, () => idle(port, '127.0.0.5'));
  await Promise.all(flood.map((f) => f.opened));
  const lives = flood.map((f) => f.closed);
  const early = await Promise.race([Promise.all(lives.slice(3)), new Promise<'late'>((r) => setTimeout(() => r('late'), 1_000))]);
  assert.notEqual(early, 'late', 'the fourth and fifth were closed at once');
  assert.ok((early as number[]).every((ms) => ms < 500), `closed after ${String(early)} ms`);
  await until(() => n.inbound.stats().pendingHandshakes === 3, 2000, 'three pending');

  // A fourth pending one from elsewhere makes it pressure (4 >= 0.5 * 6): it gets 300 ms.
  const pressured = idle(port, '127.0.0.6');
  await pressured.opened;
  const life = await pressured.closed;
  assert.ok(life >= 250 && life < 1_200, `the pressured handshake lived ${life} ms (300 ms timeout)`);
  // Tunnelled traffic still flows: the pooled session is untouched, new streams go through.
  const during = await n.dial();
  assert.equal((await exchange(during, Buffer.from('still here'))).toString(), 'still here');
  // The first three time out after 1.5 s.
  for (const ms of await Promise.all(lives.slice(0, 3))) assert.ok(ms >= 1_400 && ms < 3_000, `timed out after ${ms} ms`);
  await until(() => n.inbound.stats().pendingHandshakes === 0, 2000, 'none pending');

  const samples = parseMetrics(await n.registry.metrics());
  const value = (name: string, labels: Record<string, string>) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
  assert.equal(value('weft_tunnel_handshakes_refused_total', { cap: 'source' }), 2);
  assert.equal(value('weft_tunnel_handshake_failures_total', { reason: 'timeout' }), 4);
  const timeouts = n.logLines.filter((l) => l.msg === 'tunnel handshake refused' && l.reason === 'timeout').map((l) => String(l.detail));
  assert.deepEqual(timeouts.sort(), [
    'client 127.0.0.5: no TLS handshake within 1500 ms', 'client 127.0.0.5: no TLS handshake within 1500 ms',
    'client 127.0.0.5: no TLS handshake within 1500 ms', 'client 127.0.0.6: no TLS handshake within 300 ms',
  ]);
});

test('a TLS record header with an impossible length is counted as not_tls, naming the client', async (t) => {
  const n = await twoNodes(t);
  const s = connect({ host: '127.0.0.2', port: n.inboundAddress.port, localAddress: '127.0.0.7' });
  s.on('error', () => undefined);
  s.resume();
  s.on('connect', () => s.write(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])));
  await new Promise((r) => s.once('close', r));
  await until(() => n.logLines.some((l) => l.msg === 'tunnel handshake refused'), 2000, 'the refusal logged');
  const line = n.logLines.find((l) => l.msg === 'tunnel handshake refused');
  assert.equal(line?.reason, 'not_tls');
  assert.match(String(line?.detail), /^client 127\.0\.0\.7: /);
});
