// Measures the time from a snapshot change to all three agents holding the new config
// (onConfig called), over real gRPC+mTLS on 127.0.0.1, 100 changes one after another.
// Run alone for the figure: node --test test/unit/control/push-latency.test.ts

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODES, snapshot, startAgent, startServer, waitFor, type AgentHarness } from './harness.ts';

const CHANGES = 100;

function content(round: number) {
  return snapshot(Object.fromEntries(NODES.map((n) => [n, {
    'mesh/config': { node: n },
    'service/ns/web': { vip: '198.19.0.1', round },
    ...Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`workload/ns/w${i}`, { ip: `198.18.${i}.1`, node: n }])),
  }])));
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

test(`push latency: snapshot change to 3 agents holding it, ${CHANGES} changes`, async (t) => {
  const h = await startServer();
  t.after(() => h.server.destroy());
  h.server.setSnapshot(content(0));
  const agents: AgentHarness[] = [];
  for (const n of NODES) agents.push(await startAgent(n, h.port));
  t.after(() => Promise.all(agents.map((a) => a.client.close())));
  await Promise.all(agents.map((a) => a.client.whenSynced()));

  const samples: number[] = [];
  for (let round = 1; round <= CHANGES; round++) {
    const started = performance.now();
    const held = agents.map((a) => a.until((s) => (s.get('service/ns/web')?.body as { round: number }).round === round));
    h.server.setSnapshot(content(round));
    await Promise.all(held);
    samples.push(performance.now() - started);
  }
  const sorted = [...samples].sort((x, y) => x - y);
  const median = percentile(sorted, 50);
  const p99 = percentile(sorted, 99);
  const max = sorted.at(-1) as number;
  t.diagnostic(`push to 3 agents over mTLS, ${CHANGES} changes: median ${median.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${max.toFixed(2)} ms`);
  // Every change was one resource per node: nothing else travelled.
  const pushed = h.events.filter((e) => e.type === 'pushed' && e.changed > 0);
  assert.equal(pushed.length, 3 + CHANGES * 3);
  assert.ok(pushed.slice(3).every((e) => e.type === 'pushed' && e.changed === 1 && e.removed === 0));
  // Loose bound: on loopback this is a few ms; a second means something is broken.
  assert.ok(max < 1_000, `max ${max} ms`);
  await waitFor(() => h.events.filter((e) => e.type === 'ack').length === 3 + CHANGES * 3, 'every ACK');
  const latency = await h.registry.getSingleMetricAsString('weft_control_push_latency_seconds');
  assert.match(latency, new RegExp(`weft_control_push_latency_seconds_count\\{trigger="change"\\} ${CHANGES * 3}`));
});
