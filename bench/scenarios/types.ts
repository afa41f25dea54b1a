// What a scenario is: a named measurement, run once per (variant, path, repetition) on a
// Route, returning numbers by metric id. The runner repeats and interleaves; the report
// summarizes. A scenario never knows which path it measures.

import type { Variant } from '../cluster.ts';
import type { BenchOptions } from '../options.ts';
import type { Route } from '../paths/types.ts';

export interface MetricSpec {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  /** Only meaningful with a proxy (CPU, memory of proxies): not shown for direct. */
  readonly proxiesOnly?: boolean;
  /** Also report this metric as the increase over direct, paired repetition by repetition. */
  readonly addedOverDirect?: boolean;
  /** Kept in the JSON, left out of the table. */
  readonly hidden?: boolean;
}

export interface Measurement {
  readonly values: Readonly<Record<string, number>>;
  /** Things a reader should know about this run (errors counted by the tool, short counts). */
  readonly notes: readonly string[];
}

export interface ScenarioContext {
  readonly options: BenchOptions;
  /** Clock ticks per second for /proc CPU times. */
  readonly hz: number;
  readonly log: (line: string) => void;
}

export interface Scenario {
  readonly id: string;
  readonly title: string;
  /** How it is measured, one line for the report. */
  readonly method: string;
  readonly variants: readonly Variant[];
  readonly metrics: readonly MetricSpec[];
  /**
   * Run once per path instead of once per repetition. For memory growth: allocators keep
   * what a proxy freed, so a second run would measure reuse, not the cost of the connections.
   */
  readonly once?: boolean;
  run(ctx: ScenarioContext, route: Route, variant: Variant): Promise<Measurement>;
}
