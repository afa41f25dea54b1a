// The Grafana dashboards in deploy/grafana/ are valid dashboard JSON: unique uids, panels with
// a Prometheus datasource, a place on the grid and queries; every query is PromQL that
// Prometheus's own parser accepts (checked with promtool). That they use only metrics weft
// emits is checked against live agents and a live control plane in test/sim/prometheus.test.ts.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';

import { needsCommands } from '../../support/root.ts';
import { dashboardExpressions, dashboards, metricFamilies } from '../../support/dashboards.ts';

test('the mesh, workload and node-agent dashboards are there, each with a unique uid', () => {
  const all = dashboards();
  assert.deepEqual(all.map((d) => d.file), ['weft-mesh.json', 'weft-node-agent.json', 'weft-workload.json']);
  assert.equal(new Set(all.map((d) => d.json.uid)).size, all.length);
  for (const d of all) {
    assert.ok(d.json.title.startsWith('weft / '), d.file);
    assert.ok(d.json.templating.list.some((v) => v.name === 'datasource'), `${d.file}: no datasource variable`);
  }
});

test('every panel has a Prometheus datasource, a grid position, unique ids and queries', () => {
  for (const d of dashboards()) {
    const ids = new Set<number>();
    for (const p of d.json.panels) {
      const where = `${d.file} "${p.title}"`;
      assert.ok(!ids.has(p.id), `${where}: duplicate id ${p.id}`);
      ids.add(p.id);
      assert.equal(p.datasource?.type, 'prometheus', where);
      assert.ok(p.gridPos.w > 0 && p.gridPos.h > 0 && p.gridPos.x + p.gridPos.w <= 24, `${where}: bad gridPos`);
      assert.ok((p.targets ?? []).length > 0, `${where}: no queries`);
      for (const t of p.targets ?? []) assert.ok(t.expr.trim() !== '' && t.refId !== '', where);
    }
  }
});

test('every dashboard query is valid PromQL (promtool parses it as a rule)', (t) => {
  if (!needsCommands(t, ['promtool'])) return;
  const exprs = dashboardExpressions();
  assert.ok(exprs.length > 20);
  // Grafana's variables are not PromQL: give them values first, as Grafana does.
  const rules = exprs.map((e, i) => ({ record: `weft_dashboard_check_${i}`, expr: e.expr.replaceAll('$namespace', '.*').replaceAll('$workload', '.*').replaceAll('$instance', '.*') }));
  const dir = mkdtempSync(join(tmpdir(), 'weft-grafana-'));
  try {
    const file = join(dir, 'rules.yaml');
    writeFileSync(file, stringify({ groups: [{ name: 'dashboards', rules }] }));
    const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('metricFamilies finds the families an expression reads', () => {
  assert.deepEqual(metricFamilies('histogram_quantile(0.99, sum by (le) (rate(weft_tcp_connection_duration_seconds_bucket{reporter="source"}[1m])))'), ['weft_tcp_connection_duration_seconds']);
  assert.deepEqual(metricFamilies('sum(up{job="weft-agent"}) - time()'), ['up']);
  assert.deepEqual(metricFamilies('weft:x:rate5m > 0 and weft_a_total', new Set(['weft:x:rate5m'])), ['weft_a_total']);
});
