// The scenarios in the order they run. Memory-sensitive ones go first, while the proxies
// are fresh: fixed-rate (RSS above idle), then idle connections; then the heavy loads.

import { bulk } from './bulk.ts';
import { connRate } from './conn-rate.ts';
import { fixedRate } from './fixed-rate.ts';
import { http1, http2 } from './http-l7.ts';
import { idle } from './idle.ts';
import { saturation } from './saturation.ts';
import type { Scenario } from './types.ts';

export const SCENARIOS: readonly Scenario[] = [fixedRate, idle, saturation, connRate, http1, http2, bulk];

export function selectScenarios(ids: readonly string[] | undefined): Scenario[] {
  if (ids === undefined) return [...SCENARIOS];
  for (const id of ids) {
    if (!SCENARIOS.some((x) => x.id === id)) throw new Error(`--scenarios: unknown scenario ${JSON.stringify(id)} (known: ${SCENARIOS.map((x) => x.id).join(', ')})`);
  }
  return SCENARIOS.filter((s) => ids.includes(s.id));
}
