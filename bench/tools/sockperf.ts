// sockperf for the fixed-rate scenario: `under-load` sends at a fixed rate whatever the
// replies do (open loop, so a slow proxy shows as latency instead of a lower rate), and
// `--reply-every 1` makes every message a measured request/response. TCP, full round trip.

import type { Placement } from '../../src/sim/processes.ts';
import { failure, startTool, type ToolRun } from './exec.ts';

export interface SockperfRun {
  readonly host: string;
  readonly port: number;
  readonly mps: number;
  readonly seconds: number;
  readonly messageBytes: number;
  readonly cpus: string;
  /** Skip sockperf's warm-up stage (dummy messages, then about 2 s of waiting): for --quick. */
  readonly noWarmup?: boolean;
}

export interface SockperfResult {
  /** Messages sent in the whole run, warm-up included (what the proxies carried). */
  readonly sent: number;
  readonly observations: number;
  readonly dropped: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
}

export function sockperfServerCommand(port: number, cpus: string): string[] {
  return ['taskset', '-c', cpus, 'sockperf', 'server', '--tcp', '-i', '0.0.0.0', '-p', String(port)];
}

export function sockperfCommand(r: SockperfRun): string[] {
  return [
    'taskset', '-c', r.cpus, 'sockperf', 'under-load', '--tcp', '-i', r.host, '-p', String(r.port),
    '--mps', String(r.mps), '--reply-every', '1', '-m', String(r.messageBytes), '-t', String(r.seconds), '--full-rtt',
    ...(r.noWarmup === true ? ['--dontwarmup'] : []),
  ];
}

// sockperf colours some lines; the escapes would break the number patterns.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** Parses sockperf's summary; percentiles are round-trip microseconds (--full-rtt). */
export function parseSockperf(output: string): SockperfResult {
  const text = output.replace(ANSI, '');
  const pct = (p: string): number => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')}\\s*=\\s*([0-9.]+)`).exec(text);
    if (m === null) throw new Error(`sockperf printed no ${p} percentile: ${text.trim().split('\n').slice(-4).join(' | ')}`);
    return Number(m[1]) / 1000;
  };
  const total = /\[Total Run\][^\n]*SentMessages=(\d+)/.exec(text);
  const obs = /Total (\d+) observations/.exec(text);
  const dropped = /# dropped messages = (\d+)/.exec(text);
  if (total === null || obs === null) throw new Error(`sockperf printed no run summary: ${text.trim().split('\n').slice(-4).join(' | ')}`);
  return {
    sent: Number(total[1]), observations: Number(obs[1]), dropped: dropped === null ? 0 : Number(dropped[1]),
    p50Ms: pct('50.000'), p90Ms: pct('90.000'), p99Ms: pct('99.000'),
  };
}

export function startSockperf(where: Placement, r: SockperfRun): { run: ToolRun; result: Promise<SockperfResult> } {
  const run = startTool(where, sockperfCommand(r), (r.seconds + 15) * 1000);
  run.endInput();
  const result = run.done.then((res) => {
    if (res.status !== 0) throw new Error(failure('sockperf under-load', res));
    return parseSockperf(`${res.stdout}\n${res.stderr}`);
  });
  return { run, result };
}
