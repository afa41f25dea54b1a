// From raw repetitions to the report: a median with its spread per (scenario, variant,
// metric, path), the latency added over direct (paired by repetition), the ratios between
// paths, and where weft stands against each target. Written as JSON and as markdown.

import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { Variant } from './cluster.ts';
import type { MachineInfo } from './machine.ts';
import type { BenchOptions, PathName } from './options.ts';
import type { RawResults } from './runner.ts';
import type { MetricSpec, Scenario } from './scenarios/types.ts';
import { pairedDifferences, ratio, summarize, type Summary } from './stats.ts';
import { meets, relative, targetFor, type Target } from './targets.ts';
import { renderMarkdown } from './markdown.ts';

export interface PathCell {
  readonly summary: Summary | undefined;
  readonly samples: readonly number[];
}

export interface TargetStanding {
  readonly text: string;
  readonly kind: Target['kind'];
  readonly limit: number;
  /** The value compared: weft's median, or for the relative kinds the weft/haproxy ratio. */
  readonly weft?: { readonly value: number; readonly met: boolean };
  /** The same comparison for HAProxy (kind max only), for reference while weft is missing. */
  readonly haproxy?: { readonly value: number; readonly met: boolean };
}

export interface MetricRow {
  readonly scenario: string;
  readonly variant: Variant;
  readonly metric: string;
  readonly label: string;
  readonly unit: string;
  readonly better: MetricSpec['better'];
  readonly hidden: boolean;
  readonly byPath: Partial<Record<PathName, PathCell>>;
  readonly ratios: { readonly haproxyOverDirect?: number; readonly weftOverDirect?: number; readonly weftOverHaproxy?: number };
  readonly target?: TargetStanding;
}

export interface PathStatus {
  readonly name: PathName;
  readonly available: boolean;
  readonly status: string;
}

export interface RunProblem {
  readonly scenario: string;
  readonly variant: Variant;
  readonly path: PathName;
  readonly message: string;
}

export interface BenchReport {
  readonly name: string;
  readonly date: string;
  readonly mode: 'quick' | 'full';
  readonly machine: MachineInfo;
  readonly loadAverageAtEnd: readonly number[];
  readonly durationSeconds: number;
  readonly settings: Omit<BenchOptions, 'outDir'>;
  readonly paths: readonly PathStatus[];
  readonly scenarios: readonly { readonly id: string; readonly title: string; readonly method: string; readonly variants: readonly Variant[]; readonly once: boolean }[];
  readonly rows: readonly MetricRow[];
  readonly errors: readonly RunProblem[];
  readonly notes: readonly RunProblem[];
  /** Set when the run stopped early (deadline, signal). */
  readonly aborted?: string;
}

const PROXIED: readonly PathName[] = ['haproxy', 'weft'];

function standing(t: Target | undefined, byPath: MetricRow['byPath'], weftOverHaproxy: number | undefined): TargetStanding | undefined {
  if (t === undefined) return undefined;
  const base = { text: t.text, kind: t.kind, limit: t.limit };
  if (relative(t)) return weftOverHaproxy === undefined ? base : { ...base, weft: { value: weftOverHaproxy, met: meets(t, weftOverHaproxy) } };
  const w = byPath.weft?.summary?.median;
  const h = byPath.haproxy?.summary?.median;
  return {
    ...base,
    ...(w === undefined ? {} : { weft: { value: w, met: meets(t, w) } }),
    ...(h === undefined ? {} : { haproxy: { value: h, met: meets(t, h) } }),
  };
}

function row(scenario: string, variant: Variant, spec: MetricSpec, id: string, label: string, byPath: MetricRow['byPath'], vsDirect: boolean): MetricRow {
  const s = (p: PathName) => byPath[p]?.summary;
  const ratios = {
    ...(vsDirect && ratio(s('haproxy'), s('direct')) !== undefined ? { haproxyOverDirect: ratio(s('haproxy'), s('direct')) } : {}),
    ...(vsDirect && ratio(s('weft'), s('direct')) !== undefined ? { weftOverDirect: ratio(s('weft'), s('direct')) } : {}),
    ...(ratio(s('weft'), s('haproxy')) !== undefined ? { weftOverHaproxy: ratio(s('weft'), s('haproxy')) } : {}),
  };
  const target = standing(targetFor(scenario, variant, id), byPath, ratios.weftOverHaproxy);
  return {
    scenario, variant, metric: id, label, unit: spec.unit, better: spec.better, hidden: spec.hidden === true,
    byPath, ratios, ...(target === undefined ? {} : { target }),
  };
}

export interface ReportInput {
  readonly options: BenchOptions;
  readonly machine: MachineInfo;
  readonly startedAt: Date;
  readonly scenarios: readonly Scenario[];
  readonly paths: readonly PathStatus[];
  readonly results: RawResults;
  readonly aborted?: string;
}

export function buildReport(input: ReportInput): BenchReport {
  const rows: MetricRow[] = [];
  const errors: RunProblem[] = [];
  const notes: RunProblem[] = [];
  for (const sc of input.scenarios) {
    for (const variant of sc.variants) {
      const cells = input.results[sc.id]?.[variant] ?? {};
      for (const [path, cell] of Object.entries(cells) as [PathName, NonNullable<(typeof cells)[PathName]>][]) {
        for (const message of cell.errors) errors.push({ scenario: sc.id, variant, path, message });
        for (const message of cell.notes) notes.push({ scenario: sc.id, variant, path, message });
      }
      for (const spec of sc.metrics) {
        const byPath: MetricRow['byPath'] = {};
        for (const [path, cell] of Object.entries(cells) as [PathName, NonNullable<(typeof cells)[PathName]>][]) {
          if (spec.proxiesOnly === true && path === 'direct') continue;
          const samples = cell.samples[spec.id] ?? [];
          byPath[path] = { summary: summarize(samples), samples };
        }
        rows.push(row(sc.id, variant, spec, spec.id, spec.label, byPath, spec.proxiesOnly !== true));
        if (spec.addedOverDirect === true) {
          const direct = cells.direct?.samples[spec.id] ?? [];
          const added: MetricRow['byPath'] = {};
          for (const p of PROXIED) {
            const samples = cells[p]?.samples[spec.id];
            if (samples === undefined) continue;
            const diffs = pairedDifferences(samples, direct);
            added[p] = { summary: summarize(diffs), samples: diffs };
          }
          rows.push(row(sc.id, variant, spec, `added_${spec.id}`, `${spec.label.replace(/ round trip| latency/, '')} added over direct`, added, false));
        }
      }
    }
  }
  const settings: Omit<BenchOptions, 'outDir'> & { outDir?: string } = { ...input.options };
  delete settings.outDir;
  return {
    name: 'weft bench',
    date: input.startedAt.toISOString(),
    mode: input.options.quick ? 'quick' : 'full',
    machine: input.machine,
    loadAverageAtEnd: loadavg().map((x) => Math.round(x * 100) / 100),
    durationSeconds: Math.round((Date.now() - input.startedAt.getTime()) / 1000),
    settings,
    paths: input.paths,
    scenarios: input.scenarios.map((s) => ({ id: s.id, title: s.title, method: s.method, variants: s.variants, once: s.once === true })),
    rows, errors, notes,
    ...(input.aborted === undefined ? {} : { aborted: input.aborted }),
  };
}

/** Writes `<stem>.json` and `<stem>.md` into `dir`; returns both paths. */
export function writeReport(report: BenchReport, dir: string): { json: string; markdown: string } {
  mkdirSync(dir, { recursive: true });
  const stamp = report.date.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z').replace('T', '-');
  const stem = join(dir, `bench-${stamp}-${report.mode}`);
  const json = `${stem}.json`;
  const markdown = `${stem}.md`;
  writeFileSync(json, `${JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  writeFileSync(markdown, renderMarkdown(report));
  return { json, markdown };
}
