import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

import { Registry } from 'prom-client';

import { collectProcessMetrics } from '../../../src/telemetry/process-metrics.ts';
import { needsCommands } from '../../support/root.ts';

test('process metrics: only counters end in _total, the per-type gauges stay', async () => {
  const registry = new Registry();
  collectProcessMetrics(registry, 'weft_test_');
  const metrics = await registry.getMetricsAsJSON();
  const badlyNamed = metrics.filter((m) => m.name.endsWith('_total') && String(m.type) !== 'counter').map((m) => m.name);
  assert.deepEqual(badlyNamed, []);
  const names = metrics.map((m) => m.name);
  assert.ok(names.includes('weft_test_nodejs_active_handles'));
  assert.ok(names.includes('weft_test_process_cpu_seconds_total'));
});

test('process metrics: promtool check metrics accepts them', async (t) => {
  if (!needsCommands(t, ['promtool'])) return;
  const registry = new Registry();
  collectProcessMetrics(registry, 'weft_test_');
  const r = spawnSync('promtool', ['check', 'metrics'], { input: await registry.metrics(), encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});
