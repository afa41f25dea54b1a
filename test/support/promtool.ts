// `promtool check metrics` on a scrape. Exit 0 is clean; exit 3 means it parsed and only has
// lint remarks. Istio's own metric name istio_request_duration_milliseconds draws the
// remark 'use base unit "seconds"' by design (Istio's dashboards query that name), so that
// one remark, and only it, is accepted.

import { spawnSync } from 'node:child_process';

/** Lint remarks promtool may make about names Istio fixed. */
const ISTIO_NAMES = /^istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"$/;

export interface PromtoolVerdict {
  readonly ok: boolean;
  /** What promtool printed (empty when clean). */
  readonly output: string;
}

export function promtoolCheckMetrics(scrape: string): PromtoolVerdict {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: scrape, encoding: 'utf8' });
  const output = `${r.stdout}${r.stderr}`.trim();
  if (r.status === 0) return { ok: true, output };
  if (r.status !== 3) return { ok: false, output };
  const remarks = output.split('\n').filter((l) => l !== '');
  return { ok: remarks.every((l) => ISTIO_NAMES.test(l)), output };
}
