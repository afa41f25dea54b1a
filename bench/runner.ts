// Runs every scenario on every available path: for each (scenario, variant), repetition by
// repetition, the paths in turn (direct, haproxy, weft, direct, ...), so slow drifts of a
// noisy machine hit every path alike and repetition i of two paths can be paired.

import { setTimeout as sleep } from 'node:timers/promises';
import type { Variant } from './cluster.ts';
import type { PathName } from './options.ts';
import type { BenchPath } from './paths/types.ts';
import type { Scenario, ScenarioContext } from './scenarios/types.ts';

export interface CellResult {
  /** Values by metric id, one per repetition, in repetition order (NaN where a run failed). */
  readonly samples: Record<string, number[]>;
  readonly errors: string[];
  readonly notes: string[];
}

/** results[scenario][variant][path] */
export type RawResults = Record<string, Partial<Record<Variant, Partial<Record<PathName, CellResult>>>>>;

export async function runAll(ctx: ScenarioContext, scenarios: readonly Scenario[], paths: readonly BenchPath[], signal: AbortSignal): Promise<RawResults> {
  const live = paths.filter((p) => p.unavailable === undefined);
  const results: RawResults = {};
  const total = scenarios.reduce((n, s) => n + s.variants.length * (s.once === true ? 1 : ctx.options.reps) * live.length, 0);
  let done = 0;
  for (const scenario of scenarios) {
    const byVariant: RawResults[string] = {};
    results[scenario.id] = byVariant;
    for (const variant of scenario.variants) {
      const cells: Partial<Record<PathName, CellResult>> = {};
      byVariant[variant] = cells;
      for (const p of live) cells[p.name] = { samples: Object.fromEntries(scenario.metrics.map((m) => [m.id, []])), errors: [], notes: [] };
      const reps = scenario.once === true ? 1 : ctx.options.reps;
      for (let rep = 0; rep < reps; rep++) {
        for (const path of live) {
          if (signal.aborted) return results;
          const cell = cells[path.name];
          if (cell === undefined) continue;
          done++;
          ctx.log(`[${done}/${total}] ${scenario.id} ${variant} ${path.name} (repetition ${rep + 1}/${reps})`);
          try {
            const m = await scenario.run(ctx, path.route(variant), variant);
            for (const metric of scenario.metrics) cell.samples[metric.id]?.push(m.values[metric.id] ?? Number.NaN);
            cell.notes.push(...m.notes.map((n) => `repetition ${rep + 1}: ${n}`));
          } catch (err: unknown) {
            for (const metric of scenario.metrics) cell.samples[metric.id]?.push(Number.NaN);
            const msg = err instanceof Error ? err.message : String(err);
            cell.errors.push(`repetition ${rep + 1}: ${msg}`);
            ctx.log(`  failed: ${msg}`);
          }
          await sleep(ctx.options.settleMs);
        }
      }
    }
  }
  return results;
}
