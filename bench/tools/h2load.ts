// h2load (nghttp2-client) for the L7 scenarios: HTTP/1.1 keep-alive (`--h1`) or h2c (prior
// knowledge), closed loop for the most requests a path carries, or at a fixed rate (`--rps`
// per client) for latency and CPU per request. Percentiles come from its per-request log
// (`--log-file`: start µs, status, µs to the end of the response), since its summary only
// has min/max/mean.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Placement } from '../../src/sim/processes.ts';
import { failure, runTool } from './exec.ts';

export interface H2loadRun {
  readonly url: string;
  readonly protocol: 'h1' | 'h2';
  /** Connections (h2load "clients"). */
  readonly clients: number;
  /** Requests in flight per connection (h2 streams; for h1, 1 = no pipelining). */
  readonly streams: number;
  readonly seconds: number;
  /** Requests per second per client (the fixed-rate mode); closed loop when absent. */
  readonly ratePerClient?: number;
  /** CPU list for taskset, e.g. "1". */
  readonly cpus: string;
}

export interface H2loadResult {
  /** Requests that completed with a response (any status). */
  readonly done: number;
  readonly succeeded: number;
  /** Requests h2load counts as failed (errored and timed out ones among them), or answered other than 2xx. */
  readonly errors: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export function h2loadCommand(r: H2loadRun, logFile: string): string[] {
  return [
    'taskset', '-c', r.cpus, 'h2load', '-t1', `-c${r.clients}`, `-m${r.streams}`, `-D${r.seconds}`,
    ...(r.protocol === 'h1' ? ['--h1'] : []),
    ...(r.ratePerClient === undefined ? [] : [`--rps=${r.ratePerClient}`]),
    `--log-file=${logFile}`, r.url,
  ];
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

/** Parses h2load's summary and its per-request log; throws naming what is missing. */
export function parseH2load(stdout: string, log: string): H2loadResult {
  const finished = /finished in ([0-9.]+)(us|ms|s),/.exec(stdout);
  const requests = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(stdout);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
  if (finished === null || requests === null || codes === null) {
    throw new Error(`h2load printed no summary: ${stdout.trim().split('\n').slice(-4).join(' | ')}`);
  }
  const perSecond = finished[2] === 'us' ? 1e6 : finished[2] === 'ms' ? 1e3 : 1;
  const seconds = Number(finished[1]) / perSecond;
  if (!(seconds > 0)) throw new Error(`h2load reported a run of ${seconds} s`);
  const n = (m: RegExpExecArray, i: number): number => Number(m[i]);
  const done = n(requests, 3);
  const succeeded = n(requests, 4);
  const not2xx = done - n(codes, 1);
  const durations = log.split('\n').filter((l) => l.trim() !== '').map((l) => Number(l.split('\t')[2]) / 1000).filter(Number.isFinite).sort((a, b) => a - b);
  if (done > 0 && durations.length === 0) throw new Error('h2load wrote no per-request log lines');
  return {
    done, succeeded, errors: Math.max(n(requests, 5), not2xx),
    seconds, rps: done / seconds, p50Ms: quantile(durations, 0.5), p99Ms: quantile(durations, 0.99),
  };
}

export async function runH2load(where: Placement, r: H2loadRun): Promise<H2loadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-h2load-'));
  try {
    const logFile = join(dir, 'requests.tsv');
    const res = await runTool(where, h2loadCommand(r, logFile), (r.seconds + 15) * 1000);
    if (res.status !== 0) throw new Error(failure('h2load', res));
    let log = '';
    try {
      log = readFileSync(logFile, 'utf8');
    } catch {
      // No request completed: parseH2load says so from the summary.
    }
    return parseH2load(res.stdout, log);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
