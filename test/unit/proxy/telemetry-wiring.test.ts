// The proxy and telemetry wired together as the app will: exact opened/closed counts per
// reporter, bytes equal to what flowed, and one access-log line per connection per side,
// whatever way each connection ended.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { closure, exchange, until } from './harness.ts';
import { parseMetrics, total } from './metrics-text.ts';
import { twoNodes } from './two-nodes.ts';

test('N connections of mixed fates: opened == closed == N per side, bytes exact, one log line each', async (t) => {
  const n = await twoNodes(t, {
    // The pod resets connections whose first byte is 'R'; echoes the rest.
    echo: (s) => {
      s.once('data', (d: Buffer) => {
        if (d[0] === 0x52) {
          s.resetAndDestroy();
          return;
        }
        s.write(d);
        s.pipe(s);
      });
    },
  });
  const ok = 12;
  const reset = 4;
  const sizes = Array.from({ length: ok }, (_, i) => 1000 * (i + 1));
  const good = Promise.all(sizes.map(async (size) => {
    const data = randomBytes(size);
    data[0] = 0x41;
    const back = await exchange(await n.dial(), data);
    assert.ok(back.equals(data));
  }));
  const bad = Promise.all(Array.from({ length: reset }, async () => {
    const s = await n.dial();
    const closed = closure(s);
    s.write('Reset me');
    assert.equal(await closed, 'ECONNRESET');
  }));
  await Promise.all([good, bad]);
  await until(() => n.outbound.connections === 0 && n.inbound.stats().streams === 0, 3000, 'all connections over');
  await until(() => n.logLines.filter((l) => l.msg === 'connection').length === 2 * (ok + reset), 3000, 'log lines');

  const s = parseMetrics(await n.registry.metrics());
  for (const reporter of ['source', 'destination']) {
    assert.equal(total(s, 'istio_tcp_connections_opened_total', { reporter }), ok + reset, `${reporter} opened`);
    assert.equal(total(s, 'istio_tcp_connections_closed_total', { reporter }), ok + reset, `${reporter} closed`);
    assert.equal(total(s, 'istio_tcp_connections_closed_total', { reporter, response_flags: '-' }), ok, `${reporter} clean`);
    assert.equal(total(s, 'istio_tcp_connections_closed_total', { reporter, response_flags: 'UC' }), reset, `${reporter} resets`);
    assert.equal(total(s, 'istio_tcp_connections_opened_total', { reporter, source_workload: 'client', destination_workload: 'echo' }), ok + reset);
  }
  const sum = sizes.reduce((a, b) => a + b, 0);
  assert.equal(total(s, 'istio_tcp_sent_bytes_total', { reporter: 'source' }), sum, 'response bytes at the source');
  assert.equal(total(s, 'istio_tcp_sent_bytes_total', { reporter: 'destination' }), sum, 'response bytes at the destination');
  // The source agent read every request byte, the resets' 8 included.
  assert.equal(total(s, 'istio_tcp_received_bytes_total', { reporter: 'source' }), sum + 8 * reset, 'request bytes at the source');
  assert.equal(total(s, 'istio_tcp_connections_opened_total', { reporter: 'source', connection_security_policy: 'mutual_tls' }), ok + reset);
  assert.equal(total(s, 'istio_tcp_connections_opened_total', { reporter: 'source', destination_service: 'echo.shop.svc.cluster.local' }), ok + reset);
  const dst = n.logLines.find((l) => l.msg === 'connection' && l.reporter === 'destination');
  assert.deepEqual((dst?.src as Record<string, unknown>).workload, 'client', 'the destination learns the source workload from Forwarded');
});
