// Connection caps (issue 16, point 3): per source and global, counted in descriptors, shared
// by workers; refusals counted and logged at a bounded rate, caps on /metrics. Real listeners
// on loopback.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Writable } from 'node:stream';

import { pino } from 'pino';
import { Registry } from 'prom-client';

import { capDecision, ConnectionCaps, FD_COST } from '../../../src/proxy/connection-caps.ts';
import type { LiveConnection } from '../../../src/proxy/connection-registry.ts';
import { OverloadTelemetry } from '../../../src/telemetry/overload-telemetry.ts';
import { closure, dialCaptured, until, workload } from './harness.ts';
import { parseMetrics } from './metrics-text.ts';
import { twoNodes, VIP } from './two-nodes.ts';

const decisions: [string, Parameters<typeof capDecision>[0], string | undefined][] = [
  ['fits', { sourceHeld: 0, globalHeld: 0, cost: 2, perSource: 4, global: 10 }, undefined],
  ['exactly at the source cap', { sourceHeld: 2, globalHeld: 2, cost: 2, perSource: 4, global: 10 }, undefined],
  ['over the source cap', { sourceHeld: 4, globalHeld: 4, cost: 2, perSource: 4, global: 10 }, 'source'],
  ['over the global cap, the source being fine', { sourceHeld: 0, globalHeld: 9, cost: 2, perSource: 4, global: 10 }, 'global'],
  ['the source cap is checked first', { sourceHeld: 4, globalHeld: 10, cost: 1, perSource: 4, global: 10 }, 'source'],
];
for (const [what, input, want] of decisions) {
  test(`capDecision: ${what}`, () => assert.equal(capDecision(input), want));
}

function entry(listener: LiveConnection['listener'], sourceIp: string): LiveConnection {
  return { listener, sourceIp } as LiveConnection;
}

test('two workers share the global count; each keeps its own per-source count; release gives it back', () => {
  const shared = new Int32Array(new SharedArrayBuffer(8));
  const a = new ConnectionCaps({ globalFds: 6, perSourceFds: 4, shared });
  const b = new ConnectionCaps({ globalFds: 6, perSourceFds: 4, shared });
  const one = entry('outbound', '10.0.0.1');
  assert.equal(a.admit(one), undefined);
  assert.equal(a.admit(entry('outbound', '10.0.0.1')), undefined);
  assert.equal(a.admit(entry('outbound', '10.0.0.1'))?.flags, 'OL', 'the source holds 4 of 4 in worker a');
  assert.equal(b.admit(entry('outbound', '10.0.0.1')), undefined, 'worker b has its own share of the source cap');
  assert.equal(b.admit(entry('inbound-tunnel', '10.0.0.2'))?.detail, "the agent's connections hold 6 of 6 descriptors");
  assert.equal(Atomics.load(shared, 0), 6);
  a.released(one);
  assert.equal(Atomics.load(shared, 0), 4);
  assert.equal(b.admit(entry('inbound-tunnel', '10.0.0.2')), undefined, 'a tunnel stream costs one descriptor');
  assert.deepEqual([a.held, b.held, a.heldGlobally], [2, 3, 5]);
  assert.equal(FD_COST['inbound-plain'], 2);
});

test('one pod at its cap is refused (reset at once, no record), another pod still connects; refusals counted, logged once per interval, caps on /metrics', async (t) => {
  const registry = new Registry();
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const caps = new ConnectionCaps({ globalFds: 100, perSourceFds: 4 });
  const overload = new OverloadTelemetry({
    registry, logger: pino({ level: 'info' }, sink), logIntervalMs: 60_000,
    limits: {
      connectionFds: () => ({ cap: 100, held: caps.heldGlobally, perSourceCap: 4, heldHere: caps.held }),
      handshakes: () => ({ cap: 8, perSourceCap: 2, pending: 0 }),
    },
  });
  caps.observe(overload);
  const n = await twoNodes(t, { outboundGate: caps, echo: (s) => s.resume() });
  const other = n.mesh.addWorkload(workload('other', 'shop', '127.0.1.11', 'a'));
  // Two idle connections fill the client pod's 4 descriptors.
  const held = [await n.dial(), await n.dial()];
  await until(() => n.outbound.connections === 2, 3000, 'two admitted');
  const refused = await Promise.all(Array.from({ length: 5 }, () => n.dial().then(closure, (e: NodeJS.ErrnoException) => e.code)));
  assert.deepEqual(refused, Array(5).fill('ECONNRESET'));
  // Another pod is not affected.
  const theirs = await dialCaptured(n.outboundAddress, other.ip ?? '', VIP, n.table);
  await until(() => n.outbound.connections === 3, 3000, 'the other pod admitted');
  theirs.destroy();
  const samples = parseMetrics(await registry.metrics());
  const value = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
  assert.equal(value('weft_proxy_connections_refused_total', { listener: 'outbound', cap: 'source' }), 5);
  assert.equal(value('weft_proxy_connection_fd_cap', { scope: 'source' }), 4);
  assert.equal(value('weft_proxy_connection_fd_cap', { scope: 'global' }), 100);
  assert.ok(value('weft_proxy_connection_fds') >= 4);
  assert.equal(value('weft_tunnel_handshake_cap', { scope: 'global' }), 8);
  const warned = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('connections refused'));
  assert.equal(warned.length, 1, 'five refusals, one log line within the interval');
  assert.equal(warned[0]?.source, n.client.ip);
  assert.equal(n.logLines.filter((l) => l.msg === 'connection' && l.flags === 'OL').length, 0, 'refusals write no access-log line');
  // Freed descriptors admit again.
  for (const s of held) s.resetAndDestroy();
  await until(() => n.outbound.connections === 0 && caps.held === 0, 3000, 'released').catch((e: unknown) => { throw new Error(`${String(e)}: ${n.outbound.connections} open, ${caps.held} held`); });
  const again = await n.dial();
  await until(() => n.outbound.connections === 1 && caps.held === 2, 3000, 'admitted again');
  again.resetAndDestroy();
});
