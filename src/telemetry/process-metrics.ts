// prom-client's default process and Node.js metrics, minus the three gauges it names
// `nodejs_active_{handles,requests,resources}_total`: only counters may end in `_total`, and
// `promtool check metrics` rejects a scrape that breaks the rule. The per-type gauges
// (`nodejs_active_handles{type}` ...) stay, so nothing is lost but a sum.

import { collectDefaultMetrics, type Registry } from 'prom-client';

const GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of GAUGES_NAMED_TOTAL) registry.removeSingleMetric(`${prefix}${name}`);
}
