// HTTP spans: an application's request carrying a W3C traceparent goes through the source
// agent (CLIENT span, child of the application's span) and the destination agent (SERVER
// span, child of the CLIENT span); the backend receives a traceparent of the same trace whose
// parent is the destination agent's span. Semantic-convention attributes on both.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';

import { RequestTracer, startTracing } from '../../../src/telemetry/index.ts';
import { startOtlpReceiver } from '../../support/otlp-receiver.ts';
import { setOtelEnv } from './tracing-support.ts';

const APP_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const APP_SPAN = '00f067aa0ba902b7';

test('a request with a traceparent: app -> source agent -> destination agent -> backend, one trace', async (t) => {
  const receiver = await startOtlpReceiver('127.0.0.1', 0);
  t.after(() => receiver.close());
  setOtelEnv(`http://127.0.0.1:${receiver.port}`, 'http/protobuf');
  const tracing = startTracing({ serviceName: 'weft-agent', registry: new Registry() });
  assert.ok(tracing !== undefined);

  const fromApp = { traceparent: `00-${APP_TRACE}-${APP_SPAN}-01`, tracestate: 'app=1', accept: '*/*' };
  const source = new RequestTracer(tracing, { node: 'node-1' }).request({ reporter: 'source', method: 'GET', path: '/orders?id=7', authority: 'orders.shop.svc.cluster.local', headers: fromApp });
  const toDestination = source.traceHeaders();
  assert.ok(toDestination.remove.includes('traceparent') && toDestination.remove.includes('tracestate'));
  const hop = toDestination.set.traceparent ?? '';
  assert.match(hop, new RegExp(`^00-${APP_TRACE}-[0-9a-f]{16}-01$`), 'the same trace goes on');
  assert.equal(toDestination.set.tracestate, 'app=1', 'tracestate is carried');

  const dest = new RequestTracer(tracing, { node: 'node-2' }).request({ reporter: 'destination', method: 'GET', path: '/orders?id=7', authority: 'orders.shop.svc.cluster.local', headers: { ...toDestination.set } });
  const toBackend = dest.traceHeaders().set.traceparent ?? '';
  assert.match(toBackend, new RegExp(`^00-${APP_TRACE}-[0-9a-f]{16}-01$`));

  const description = {
    protocol: 'http' as const, method: 'GET', authority: 'orders.shop.svc.cluster.local', path: '/orders?id=7', security: 'mutual_tls' as const,
    source: { workload: 'web-1', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/web', address: '198.18.1.10:40000' },
    destination: { workload: 'orders-2', namespace: 'shop', address: '198.18.2.11:8080' },
    service: { host: 'orders.shop.svc.cluster.local', name: 'orders', namespace: 'shop' }, route: 'shop/orders-route',
  };
  dest.describe({ ...description, reporter: 'destination' });
  dest.finish({ status: 503, grpcStatus: undefined, flags: 'UF', requestBytes: 0, responseBytes: 19, upstream: '198.18.2.11:8080', retries: 0 });
  source.describe({ ...description, reporter: 'source' });
  source.finish({ status: 503, grpcStatus: undefined, flags: '-', requestBytes: 0, responseBytes: 19, upstream: '198.18.2.11:8080', retries: 1 });
  await tracing.shutdown();
  await receiver.waitFor((s) => s.length >= 2, 10_000, 'two spans');

  const client = receiver.spans.find((s) => s.kind === 3);
  const server = receiver.spans.find((s) => s.kind === 2);
  assert.ok(client !== undefined && server !== undefined, JSON.stringify(receiver.spans));
  assert.equal(client.traceId, APP_TRACE, "the application's trace");
  assert.equal(client.parentSpanId, APP_SPAN, "the source agent's span is a child of the application's");
  assert.equal(hop, `00-${APP_TRACE}-${client.spanId}-01`);
  assert.equal(server.traceId, APP_TRACE);
  assert.equal(server.parentSpanId, client.spanId, "the destination agent's span is a child of the source agent's");
  assert.equal(toBackend, `00-${APP_TRACE}-${server.spanId}-01`, "the backend's parent is the destination agent's span");
  assert.equal(client.name, 'GET shop/orders-route');
  for (const s of [client, server]) {
    assert.equal(s.attributes['http.request.method'], 'GET');
    assert.equal(s.attributes['url.path'], '/orders');
    assert.equal(s.attributes['http.response.status_code'], 503);
    assert.equal(s.attributes['server.address'], 'orders.shop.svc.cluster.local');
    assert.equal(s.attributes['weft.source.workload'], 'web-1');
    assert.equal(s.attributes['weft.destination.workload'], 'orders-2');
    assert.equal(s.attributes['weft.route'], 'shop/orders-route');
    assert.equal(s.attributes['error.type'], '503');
    assert.equal(s.status, 2);
  }
  assert.equal(client.attributes['network.peer.address'], '198.18.2.11');
  assert.equal(server.attributes['network.peer.address'], '198.18.1.10');
  assert.equal(client.attributes['weft.retries'], 1);
  assert.equal(server.attributes['weft.response_flags'], 'UF');
  assert.equal(server.attributes['weft.source.principal'], 'spiffe://cluster.local/ns/shop/sa/web');
});
