// traceRelayPlan: the demo relays traces only to a collector on this machine's loopback, and
// hands the simulated mesh the relay's address instead, keeping the path.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RELAY_ENDPOINT, traceRelayPlan } from '../../../src/cli/demo-views.ts';

test('traceRelayPlan', () => {
  assert.equal(traceRelayPlan({}), undefined);
  assert.deepEqual(traceRelayPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), {
    target: { host: '127.0.0.1', port: 4318 }, env: { OTEL_EXPORTER_OTLP_ENDPOINT: RELAY_ENDPOINT },
  });
  assert.deepEqual(traceRelayPlan({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://localhost:14318/v1/traces' }), {
    target: { host: '127.0.0.1', port: 14318 }, env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${RELAY_ENDPOINT}/v1/traces` },
  });
  assert.match(JSON.stringify(traceRelayPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector.example:4318' })), /must name a collector on this machine's loopback/);
  assert.match(JSON.stringify(traceRelayPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://127.0.0.1:4318' })), /plain http only/);
  assert.match(JSON.stringify(traceRelayPlan({ OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' })), /is not a URL/);
});
