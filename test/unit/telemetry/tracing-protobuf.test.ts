// Tracing exports http/protobuf (the default protocol) to an OTLP receiver: the two agents'
// spans of one connection are one trace, the destination's parent is the source's span.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { startOtlpReceiver } from '../../support/otlp-receiver.ts';
import { assertOneTrace, setOtelEnv, tracedConnection } from './tracing-support.ts';

test('http/protobuf: one trace across both agents', async (t) => {
  const receiver = await startOtlpReceiver('127.0.0.1', 0);
  t.after(() => receiver.close());
  setOtelEnv(`http://127.0.0.1:${receiver.port}`, 'http/protobuf');
  const { registry, headers } = await tracedConnection();
  await receiver.waitFor((s) => s.length >= 2, 10_000, 'two spans');
  assert.ok(receiver.requests.every((r) => r === 'application/x-protobuf'), receiver.requests.join());
  assertOneTrace(receiver.spans, headers);
  assert.match(await registry.metrics(), /weft_trace_spans_exported_total 2\n/);
});
