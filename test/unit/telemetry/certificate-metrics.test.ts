// CertificateMetrics: expiry gauge per identity, request results counted, the failure series
// present at 0 from the first issue (so Prometheus sees the first failure as an increase),
// and an identity that leaves the node leaves the metrics.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';

import { CertificateMetrics } from '../../../src/telemetry/index.ts';

const ID = 'spiffe://cluster.local/ns/demo/sa/echo';

test('issue, fail, remove', async () => {
  const registry = new Registry();
  const m = new CertificateMetrics(registry);
  m.observe({ type: 'issued', identity: ID, notAfter: new Date(86_400_000) });
  let text = await registry.metrics();
  assert.match(text, /weft_agent_certificate_expiry_timestamp_seconds\{identity="spiffe:\/\/cluster.local\/ns\/demo\/sa\/echo"\} 86400\n/);
  assert.match(text, /weft_agent_certificate_requests_total\{identity="[^"]+",result="success"\} 1\n/);
  assert.match(text, /weft_agent_certificate_requests_total\{identity="[^"]+",result="failure"\} 0\n/);
  m.observe({ type: 'failed', identity: ID });
  m.observe({ type: 'failed', identity: ID });
  text = await registry.metrics();
  assert.match(text, /result="failure"\} 2\n/);
  m.observe({ type: 'expired', identity: ID });
  assert.doesNotMatch(await registry.metrics(), /weft_agent_certificate_expiry_timestamp_seconds\{/);
  m.observe({ type: 'removed', identity: ID });
  assert.doesNotMatch(await registry.metrics(), /identity="spiffe/);
});
