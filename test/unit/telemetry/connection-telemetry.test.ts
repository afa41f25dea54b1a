import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';

import { pino } from 'pino';
import { Registry } from 'prom-client';

import { ManualClock } from '../../../src/core/clock.ts';
import { ConnectionTelemetry } from '../../../src/telemetry/connection-telemetry.ts';
import type { ConnectionDescription } from '../../../src/telemetry/types.ts';
import { parseMetrics, total } from '../proxy/metrics-text.ts';

function setup() {
  const registry = new Registry();
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const clock = new ManualClock();
  const telemetry = new ConnectionTelemetry({ registry, logger: pino(sink), clock, cluster: 'test-cluster' });
  return { registry, lines, clock, telemetry };
}

const web: ConnectionDescription = {
  reporter: 'source',
  source: { workload: 'client', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/client', app: 'client', address: '10.0.0.1:5000' },
  destination: { workload: 'web', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/web', app: 'web', address: '10.0.0.2:8080' },
  service: { host: 'web.shop.svc.cluster.local', name: 'web', namespace: 'shop' },
  security: 'mutual_tls',
};

test('opened when identified, closed once per finish, by flags; labels as Istio names them', async () => {
  const { registry, telemetry, lines } = setup();
  const a = telemetry.open();
  const b = telemetry.open();
  const c = telemetry.open();
  a.identify(web);
  b.identify(web);
  b.identify({ ...web, reporter: 'destination' }); // ignored: identified once
  let s = parseMetrics(await registry.metrics());
  assert.equal(total(s, 'istio_tcp_connections_opened_total'), 2);
  assert.equal(total(s, 'istio_tcp_connections_closed_total'), 0);
  a.finish('-');
  a.finish('UF'); // ignored: finished once
  b.finish('UF', 'connect refused');
  c.finish('NR'); // never identified: counted opened and closed with unknown labels
  s = parseMetrics(await registry.metrics());
  assert.equal(total(s, 'istio_tcp_connections_opened_total'), 3);
  assert.equal(total(s, 'istio_tcp_connections_closed_total'), 3);
  assert.equal(total(s, 'istio_tcp_connections_closed_total', { response_flags: 'UF' }), 1);
  assert.equal(total(s, 'istio_tcp_connections_closed_total', { response_flags: '-', destination_workload: 'web' }), 1);
  assert.equal(total(s, 'istio_tcp_connections_closed_total', { response_flags: 'NR', destination_workload: 'unknown' }), 1);
  const opened = s.find((x) => x.name === 'istio_tcp_connections_opened_total' && x.labels.destination_workload === 'web');
  assert.deepEqual(opened?.labels, {
    reporter: 'source', source_workload: 'client', source_workload_namespace: 'shop',
    source_principal: 'spiffe://cluster.local/ns/shop/sa/client', source_app: 'client', source_cluster: 'test-cluster',
    destination_workload: 'web', destination_workload_namespace: 'shop', destination_principal: 'spiffe://cluster.local/ns/shop/sa/web',
    destination_app: 'web', destination_service: 'web.shop.svc.cluster.local', destination_service_name: 'web',
    destination_service_namespace: 'shop', destination_cluster: 'test-cluster', request_protocol: 'tcp', response_flags: '-',
    connection_security_policy: 'mutual_tls',
  });
  assert.equal(total(s, 'weft_tcp_connection_duration_seconds_count'), 3);
  assert.equal(lines.filter((l) => l.msg === 'connection').length, 3);
});

test('bytes are read from the socket counters: live at scrape time, final at finish, never twice', async () => {
  const { registry, telemetry, lines, clock } = setup();
  const socket = { bytesRead: 0, bytesWritten: 0 };
  const r = telemetry.open();
  r.identify(web);
  r.countBytes(socket, 'client');
  socket.bytesRead = 1000;
  socket.bytesWritten = 50;
  let s = parseMetrics(await registry.metrics());
  assert.equal(total(s, 'istio_tcp_received_bytes_total'), 1000);
  assert.equal(total(s, 'istio_tcp_sent_bytes_total'), 50);
  socket.bytesRead = 1500;
  socket.bytesWritten = 70;
  clock.advance(2500);
  r.finish('-');
  socket.bytesRead = 99_999; // after finish: not counted
  s = parseMetrics(await registry.metrics());
  assert.equal(total(s, 'istio_tcp_received_bytes_total'), 1500);
  assert.equal(total(s, 'istio_tcp_sent_bytes_total'), 70);
  assert.equal(telemetry.live, 0);
  const line = lines.find((l) => l.msg === 'connection');
  assert.equal(line?.bytes_received, 1500);
  assert.equal(line?.bytes_sent, 70);
  assert.equal(line?.duration_ms, 2500);
  assert.equal(total(s, 'weft_tcp_connection_duration_seconds_bucket', { le: '1' }), 0);
  assert.equal(total(s, 'weft_tcp_connection_duration_seconds_bucket', { le: '5' }), 1);
});

test('a socket facing the server counts its writes as request bytes', async () => {
  const { registry, telemetry } = setup();
  const r = telemetry.open();
  r.identify({ ...web, reporter: 'destination' });
  r.countBytes({ bytesRead: 7, bytesWritten: 300 }, 'server');
  r.finish('-');
  const s = parseMetrics(await registry.metrics());
  assert.equal(total(s, 'istio_tcp_received_bytes_total', { reporter: 'destination' }), 300);
  assert.equal(total(s, 'istio_tcp_sent_bytes_total', { reporter: 'destination' }), 7);
});

test('denials and refused handshakes are counted; the access log can be turned off', async () => {
  const registry = new Registry();
  const lines: string[] = [];
  const logger = pino(new Writable({
    write(chunk: Buffer, _e, cb) {
      lines.push(chunk.toString());
      cb();
    },
  }));
  const telemetry = new ConnectionTelemetry({ registry, logger, accessLog: false });
  const r = telemetry.open();
  r.identify(web);
  r.finish('DENY', 'denied: policy shop/deny');
  telemetry.handshakeFailed('untrusted_peer', 'client 10.0.0.9: bad CA');
  const s = parseMetrics(await registry.metrics());
  assert.equal(total(s, 'weft_policy_denials_total', { reporter: 'source' }), 1);
  assert.equal(total(s, 'weft_tunnel_handshake_failures_total', { reason: 'untrusted_peer' }), 1);
  assert.equal(lines.filter((l) => l.includes('"connection"')).length, 0);
  assert.equal(lines.filter((l) => l.includes('tunnel handshake refused')).length, 1);
});

test('the same label set is built once per pair', () => {
  const { telemetry } = setup();
  const p1 = telemetry.metrics.pair(web);
  const p2 = telemetry.metrics.pair({ ...web, source: { ...web.source, address: '10.0.0.1:6000' } });
  assert.equal(p1, p2, 'addresses are not labels');
  assert.notEqual(p1, telemetry.metrics.pair({ ...web, reporter: 'destination' }));
});

test('refused-handshake log lines are rate limited; the counter is not', async () => {
  const { registry, telemetry, lines, clock } = setup();
  for (let i = 0; i < 25; i++) telemetry.handshakeFailed('not_tls', `client ${i}`);
  clock.advance(1000);
  telemetry.handshakeFailed('not_tls', 'client after');
  const logged = lines.filter((l) => l.msg === 'tunnel handshake refused');
  assert.equal(logged.length, 11);
  assert.equal(logged.at(-1)?.suppressed, 15);
  assert.equal(total(parseMetrics(await registry.metrics()), 'weft_tunnel_handshake_failures_total', { reason: 'not_tls' }), 26);
});
