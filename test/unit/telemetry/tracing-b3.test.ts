// B3 on request: with OTEL_PROPAGATORS=tracecontext,b3multi a request carrying only Zipkin's
// X-B3-* headers continues that trace, and the request sent on carries both W3C and B3.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';

import { RequestTracer, startTracing } from '../../../src/telemetry/index.ts';
import { startOtlpReceiver } from '../../support/otlp-receiver.ts';
import { setOtelEnv } from './tracing-support.ts';

test('B3 multi-header: extracted, and injected beside traceparent', async (t) => {
  const receiver = await startOtlpReceiver('127.0.0.1', 0);
  t.after(() => receiver.close());
  setOtelEnv(`http://127.0.0.1:${receiver.port}`, 'http/json');
  process.env.OTEL_PROPAGATORS = 'tracecontext,b3multi';
  const tracing = startTracing({ serviceName: 'weft-agent', registry: new Registry() });
  assert.ok(tracing !== undefined);
  const trace = '463ac35c9f6413ad48485a3953bb6124';
  const parent = 'a2fb4a1d1a96d312';
  const r = new RequestTracer(tracing, { node: 'node-1' }).request({
    reporter: 'source', method: 'POST', path: '/pay', authority: 'pay:80', headers: { 'x-b3-traceid': trace, 'x-b3-spanid': parent, 'x-b3-sampled': '1' },
  });
  const out = r.traceHeaders();
  assert.match(out.set.traceparent ?? '', new RegExp(`^00-${trace}-[0-9a-f]{16}-01$`));
  assert.equal(out.set['x-b3-traceid'], trace);
  assert.equal(out.set['x-b3-sampled'], '1');
  assert.ok(out.remove.includes('x-b3-traceid') && out.remove.includes('traceparent'), out.remove.join());
  r.finish({ status: 200, grpcStatus: undefined, flags: '-', requestBytes: 3, responseBytes: 2, upstream: undefined, retries: 0 });
  // The next hop gets W3C and B3 headers of one trace: B3 (extracted last) has no tracestate, the W3C one is kept.
  const next = new RequestTracer(tracing, { node: 'node-2' }).request({
    reporter: 'destination', method: 'POST', path: '/pay', authority: 'pay:80', headers: { ...out.set, tracestate: 'app=1' },
  });
  const toPod = next.traceHeaders().set;
  assert.equal(toPod.tracestate, 'app=1', 'tracestate survives the B3 extraction');
  assert.equal(toPod['x-b3-traceid'], trace);
  // Another trace's tracestate is not grafted onto the B3 context.
  const other = new RequestTracer(tracing, { node: 'node-2' }).request({
    reporter: 'destination', method: 'POST', path: '/pay', authority: 'pay:80',
    headers: { ...out.set, traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`, tracestate: 'other=1' },
  });
  assert.equal(other.traceHeaders().set.tracestate, undefined);
  await tracing.shutdown();
  await receiver.waitFor((s) => s.length >= 1, 10_000, 'the span');
  const span = receiver.spans[0];
  assert.equal(span?.traceId, trace);
  assert.equal(span?.parentSpanId, parent);
  assert.equal(out.set['x-b3-spanid'], span?.spanId);
  assert.equal(span?.status, 0);
  assert.equal(span?.attributes['server.port'], 80);
});
