// Tracing exports http/json when OTEL_EXPORTER_OTLP_PROTOCOL says so.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { startOtlpReceiver } from '../../support/otlp-receiver.ts';
import { assertOneTrace, setOtelEnv, tracedConnection } from './tracing-support.ts';

test('http/json: one trace across both agents', async (t) => {
  const receiver = await startOtlpReceiver('127.0.0.1', 0);
  t.after(() => receiver.close());
  setOtelEnv(`http://127.0.0.1:${receiver.port}`, 'http/json');
  const { headers } = await tracedConnection();
  await receiver.waitFor((s) => s.length >= 2, 10_000, 'two spans');
  assert.ok(receiver.requests.every((r) => r.startsWith('application/json')), receiver.requests.join());
  assertOneTrace(receiver.spans, headers);
});
