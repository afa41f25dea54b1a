// The alert and recording rules (deploy/prometheus/weft-rules.yaml) pass `promtool check
// rules`, and `promtool test rules` (weft-rules.test.yaml) gives every alert a firing case
// and a quiet case that pass.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';

import { needsCommands } from '../../support/root.ts';
import { RULES_FILE, alertNames } from '../../support/dashboards.ts';

const TESTS = join(import.meta.dirname, 'weft-rules.test.yaml');

test('promtool check rules accepts weft-rules.yaml', (t) => {
  if (!needsCommands(t, ['promtool'])) return;
  const r = spawnSync('promtool', ['check', 'rules', RULES_FILE], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS: \d+ rules found/);
});

test('every alert has a firing and a quiet case in the promtool tests', () => {
  const doc = parse(readFileSync(TESTS, 'utf8')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] };
  const cases = doc.tests.flatMap((c) => c.alert_rule_test ?? []);
  const alerts = alertNames();
  assert.ok(alerts.length >= 9, `only ${alerts.length} alerts`);
  for (const name of alerts) {
    const mine = cases.filter((c) => c.alertname === name);
    assert.ok(mine.some((c) => c.exp_alerts.length > 0), `${name} has no firing case`);
    assert.ok(mine.some((c) => c.exp_alerts.length === 0), `${name} has no quiet case`);
  }
  for (const c of cases) assert.ok(alerts.includes(c.alertname), `the tests name an alert the rules lack: ${c.alertname}`);
});

test('promtool test rules passes', (t) => {
  if (!needsCommands(t, ['promtool'])) return;
  const r = spawnSync('promtool', ['test', 'rules', TESTS], { encoding: 'utf8', cwd: import.meta.dirname });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS/);
});
