// Request telemetry: Istio's request metrics with Istio's labels and buckets, one access-log
// line per request, worker registries that aggregate, and a scrape promtool accepts.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';

import { pino } from 'pino';
import { AggregatorRegistry, Registry } from 'prom-client';

import { ManualClock } from '../../../src/core/clock.ts';
import { ISTIO_DURATION_BUCKETS_MS } from '../../../src/telemetry/request-metrics.ts';
import { RequestTelemetry } from '../../../src/telemetry/request-telemetry.ts';
import type { RequestDescription } from '../../../src/telemetry/types.ts';
import { promtoolCheckMetrics } from '../../support/promtool.ts';
import { needsCommands } from '../../support/root.ts';

const description: RequestDescription = {
  reporter: 'source',
  source: { workload: 'client', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/client', app: 'client', address: '10.0.0.1:5000' },
  destination: { workload: 'web', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/web', app: 'web', address: '10.0.0.2:8080' },
  service: { host: 'web.shop.svc.cluster.local', name: 'web', namespace: 'shop' },
  security: 'mutual_tls', protocol: 'grpc', method: 'POST', authority: 'web.shop:80', path: '/pkg.Svc/Get', route: 'shop/canary',
};

function setup() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(new Writable({
    write(c: Buffer, _e, cb) {
      for (const l of c.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  }));
  const registry = new Registry();
  const clock = new ManualClock();
  const telemetry = new RequestTelemetry({ registry, logger, clock, cluster: 'Kubernetes' });
  return { lines, registry, clock, telemetry };
}

test('request telemetry: istio_requests_total and the three histograms, with Istio labels and buckets', async () => {
  const { registry, clock, telemetry } = setup();
  for (const [ms, code, grpc] of [[3, 200, '0'], [40, 200, '0'], [7, 503, '14']] as const) {
    const r = telemetry.request();
    clock.advance(ms);
    r.describe(description);
    r.finish({ status: code, grpcStatus: grpc, flags: code === 503 ? 'UH' : '-', requestBytes: 12, responseBytes: 1500, upstream: '10.0.0.2:8080', retries: 0 });
  }
  const text = await registry.metrics();
  const total = /istio_requests_total\{([^}]*)\} (\d+)/g;
  const series = [...text.matchAll(total)].map((m) => [m[1], Number(m[2])] as const);
  assert.equal(series.length, 2);
  const ok = series.find(([l]) => l?.includes('response_code="200"'));
  assert.equal(ok?.[1], 2);
  for (const label of ['reporter="source"', 'source_workload="client"', 'destination_workload="web"', 'destination_service="web.shop.svc.cluster.local"',
    'request_protocol="grpc"', 'grpc_response_status="0"', 'response_flags="-"', 'connection_security_policy="mutual_tls"', 'source_cluster="Kubernetes"']) {
    assert.ok(ok?.[0]?.includes(label), `${label} in ${ok?.[0]}`);
  }
  assert.match(text, /istio_requests_total\{[^}]*response_code="503"[^}]*grpc_response_status="14"[^}]*response_flags="UH"[^}]*\} 1/);
  // Istio's duration buckets, all of them, cumulative.
  const les = [...text.matchAll(/istio_request_duration_milliseconds_bucket\{[^}]*response_code="200"[^}]*le="([^"]+)"\} (\d+)/g)].map((m) => [m[1], Number(m[2])]);
  assert.deepEqual(les.map(([le]) => le), [...ISTIO_DURATION_BUCKETS_MS.map(String), '+Inf']);
  assert.deepEqual(les.filter(([le]) => ['1', '5', '25', '50', '+Inf'].includes(String(le))).map(([, v]) => v), [0, 1, 1, 2, 2]);
  assert.match(text, /istio_request_duration_milliseconds_sum\{[^}]*response_code="200"[^}]*\} 43/);
  assert.match(text, /istio_request_bytes_bucket\{[^}]*response_code="200"[^}]*le="100"\} 2/);
  assert.match(text, /istio_response_bytes_bucket\{[^}]*response_code="200"[^}]*le="1000"\} 0/);
  assert.match(text, /istio_response_bytes_bucket\{[^}]*response_code="200"[^}]*le="10000"\} 2/);
});

test('request telemetry: one access-log line per request, written once', () => {
  const { lines, clock, telemetry } = setup();
  const r = telemetry.request();
  clock.advance(12.5);
  r.describe(description);
  r.describe({ ...description, path: '/ignored' });
  const outcome = { status: 200, grpcStatus: '0', flags: '-', requestBytes: 3, responseBytes: 4, upstream: '10.0.0.2:8080', retries: 1 };
  r.finish(outcome);
  r.finish({ ...outcome, status: 500 });
  assert.equal(lines.length, 1);
  const l = lines[0];
  assert.equal(l?.msg, 'request');
  for (const [k, v] of Object.entries({ method: 'POST', authority: 'web.shop:80', path: '/pkg.Svc/Get', status: 200, duration_ms: 12.5, upstream: '10.0.0.2:8080', route: 'shop/canary', retries: 1, flags: '-', reporter: 'source', bytes_received: 3, bytes_sent: 4 })) {
    assert.deepEqual(l?.[k], v, k);
  }
});

test('request telemetry: worker registries aggregate by summing', async () => {
  const a = setup();
  const b = setup();
  for (const t of [a, b]) {
    const r = t.telemetry.request();
    t.clock.advance(2);
    r.describe(description);
    r.finish({ status: 200, grpcStatus: '0', flags: '-', requestBytes: 1, responseBytes: 1, upstream: undefined, retries: 0 });
  }
  const merged = AggregatorRegistry.aggregate([await a.registry.getMetricsAsJSON(), await b.registry.getMetricsAsJSON()]);
  const text = await merged.metrics();
  assert.match(text, /istio_requests_total\{[^}]*\} 2/);
  assert.match(text, /istio_request_duration_milliseconds_count\{[^}]*\} 2/);
});

test('request telemetry: promtool check metrics parses the scrape (only remark: Istio\'s own milliseconds name)', async (t) => {
  if (!needsCommands(t, ['promtool'])) return;
  const { registry, telemetry } = setup();
  const r = telemetry.request();
  r.describe(description);
  r.finish({ status: 200, grpcStatus: '0', flags: '-', requestBytes: 1, responseBytes: 1, upstream: undefined, retries: 0 });
  assert.equal(promtoolCheckMetrics('not_a_metric{ 1\n').ok, false, 'a broken scrape is refused');
  const verdict = promtoolCheckMetrics(await registry.metrics());
  assert.ok(verdict.ok, verdict.output);
  // Parsed, and nothing but the remark about Istio's fixed name.
  assert.ok(verdict.output === '' || /istio_request_duration_milliseconds use base unit/.test(verdict.output), verdict.output);
});

test('request telemetry: the scrape survives a structured clone (worker threads post it)', async () => {
  const { registry, telemetry } = setup();
  const r = telemetry.request();
  r.describe(description);
  r.finish({ status: 200, grpcStatus: '0', flags: '-', requestBytes: 1, responseBytes: 1, upstream: undefined, retries: 0 });
  const cloned = structuredClone(await registry.getMetricsAsJSON());
  const text = await AggregatorRegistry.aggregate([cloned]).metrics();
  assert.match(text, /istio_requests_total\{[^}]*\} 1/);
});
