// The Grafana dashboards (deploy/grafana/*.json) and Prometheus rules
// (deploy/prometheus/weft-rules.yaml) as tests read them: every PromQL expression, and the
// metric families those expressions name.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

export const DEPLOY = join(import.meta.dirname, '..', '..', 'deploy');
export const RULES_FILE = join(DEPLOY, 'prometheus', 'weft-rules.yaml');

export interface DashboardFile {
  readonly file: string;
  readonly json: { uid: string; title: string; panels: Panel[]; templating: { list: { name: string; query?: unknown }[] } };
}

export interface Panel {
  id: number;
  title: string;
  type: string;
  datasource?: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { expr: string; refId: string }[];
}

export function dashboards(): DashboardFile[] {
  const dir = join(DEPLOY, 'grafana');
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((file) => ({
    file, json: JSON.parse(readFileSync(join(dir, file), 'utf8')) as DashboardFile['json'],
  }));
}

/** Every expression of every dashboard panel and variable, with where it came from. */
export function dashboardExpressions(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const d of dashboards()) {
    for (const p of d.json.panels) for (const t of p.targets ?? []) out.push({ where: `${d.file} panel "${p.title}" ${t.refId}`, expr: t.expr });
    for (const v of d.json.templating.list) {
      const q = (v.query as { query?: string } | undefined)?.query;
      if (typeof q === 'string') out.push({ where: `${d.file} variable ${v.name}`, expr: q.replace(/^label_values\((.*),\s*\w+\)$/, '$1') });
    }
  }
  return out;
}

export function ruleExpressions(): { where: string; expr: string; record?: string }[] {
  const doc = parse(readFileSync(RULES_FILE, 'utf8')) as { groups: { name: string; rules: { record?: string; alert?: string; expr: string }[] }[] };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ where: `${g.name} ${r.record ?? r.alert ?? '?'}`, expr: String(r.expr), record: r.record })));
}

export function alertNames(): string[] {
  const doc = parse(readFileSync(RULES_FILE, 'utf8')) as { groups: { rules: { alert?: string }[] }[] };
  return doc.groups.flatMap((g) => g.rules.flatMap((r) => (r.alert === undefined ? [] : [r.alert])));
}

const PROMQL_WORDS = new Set([
  'sum', 'by', 'without', 'rate', 'increase', 'irate', 'histogram_quantile', 'round', 'min', 'max', 'avg', 'count', 'time',
  'and', 'or', 'unless', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'le', 'label_values', 'absent',
]);

/**
 * Metric families an expression reads: identifiers followed by a selector, a range, or
 * standing alone, minus PromQL keywords and functions, label names inside braces and
 * `by (...)` lists, and recording-rule names; `_bucket`/`_sum`/`_count` map to the family.
 */
export function metricFamilies(expr: string, recorded: ReadonlySet<string> = new Set()): string[] {
  const stripped = expr
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, ' ')
    .replace(/"[^"]*"/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const id = m[0];
    if (PROMQL_WORDS.has(id) || recorded.has(id) || /^\d/.test(id)) continue;
    names.add(id.replace(/_(bucket|sum|count)$/, ''));
  }
  return [...names].sort();
}
