// Tracing is off unless an OTLP endpoint is set, and then nothing is composed: connections go
// to the metrics observer alone. A dead collector costs a counter and nothing else.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';

import { composeObservers, startTracing, tracingRequested, type Observer } from '../../../src/telemetry/index.ts';
import { tracedConnection, setOtelEnv } from './tracing-support.ts';
import { Registry } from 'prom-client';

test('tracingRequested: an endpoint turns traces on; OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none turn them off', () => {
  const cases: Array<[NodeJS.ProcessEnv, boolean]> = [
    [{}, false],
    [{ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }, true],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }, true],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: '' }, false],
  ];
  for (const [env, want] of cases) assert.equal(tracingRequested(env), want, JSON.stringify(env));
});

test('with no OTEL_* set nothing starts and one observer is used as it is', () => {
  for (const k of Object.keys(process.env)) if (k.startsWith('OTEL_')) delete process.env[k];
  assert.equal(startTracing({ serviceName: 'weft-agent', registry: new Registry() }), undefined);
  const only: Observer = { open: () => ({ identify() {}, countBytes() {}, finish() {} }), handshakeFailed() {} };
  assert.equal(composeObservers(only), only, 'nothing wraps the metrics observer when tracing is off');
});

test('a bad protocol is refused by name', () => {
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://127.0.0.1:1';
  process.env.OTEL_EXPORTER_OTLP_PROTOCOL = 'grpc';
  try {
    assert.throws(() => startTracing({ serviceName: 'weft-agent', registry: new Registry() }), { code: 'WEFT_TELEMETRY_BAD_OPTION', message: /OTEL_EXPORTER_OTLP_PROTOCOL "grpc" is not supported/ });
  } finally {
    delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL;
  }
});

test('a dead collector: spans are counted as failed exports, nothing throws, shutdown is bounded', async () => {
  // A port that was just free: nothing listens there.
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  setOtelEnv(`http://127.0.0.1:${port}`, 'http/protobuf');
  const { registry, shutdown } = await tracedConnection({ shutdown: false });
  // The exporter retries with backoff within its timeout (OTEL_EXPORTER_OTLP_TIMEOUT), then gives up.
  const deadline = Date.now() + 20_000;
  let text = '';
  while (Date.now() < deadline) {
    text = await registry.metrics();
    if (/weft_trace_export_failures_total\{/.test(text)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.match(text, /weft_trace_export_failures_total\{reason="unreachable"\} 2\n/, text);
  assert.match(text, /weft_trace_spans_exported_total 0\n/);
  const started = Date.now();
  await shutdown();
  assert.ok(Date.now() - started < 3000, `shutdown took ${Date.now() - started} ms`);
});
