// wrk (Debian's 4.1: closed-loop, no fixed-rate mode) for saturation and connection-rate
// runs. Results come from a Lua `done` hook (wrk-report.lua) as one JSON line.

import { join } from 'node:path';
import type { Placement } from '../../src/sim/processes.ts';
import { failure, runTool } from './exec.ts';

export const WRK_REPORT = join(import.meta.dirname, 'wrk-report.lua');

export interface WrkRun {
  readonly url: string;
  readonly connections: number;
  readonly threads: number;
  readonly seconds: number;
  /** CPU list for taskset, e.g. "1". */
  readonly cpus: string;
  /** One request per connection (`Connection: close`): measures new connections per second. */
  readonly closeEach?: boolean;
}

export interface WrkResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
}

export function wrkCommand(r: WrkRun): string[] {
  return [
    'taskset', '-c', r.cpus, 'wrk', `-t${r.threads}`, `-c${r.connections}`, `-d${r.seconds}s`, '--timeout', '5s', '--latency',
    '-s', WRK_REPORT, ...(r.closeEach === true ? ['-H', 'Connection: close'] : []), r.url,
  ];
}

interface WrkJson {
  requests: number; duration_us: number; connect_errors: number; read_errors: number; write_errors: number;
  status_errors: number; timeouts: number; p50_us: number; p90_us: number; p99_us: number;
}

/** Parses the hook's line out of wrk's stdout; throws naming what is missing. */
export function parseWrk(stdout: string): WrkResult {
  const line = stdout.split('\n').find((l) => l.startsWith('WEFT_WRK_JSON '));
  if (line === undefined) throw new Error(`wrk printed no WEFT_WRK_JSON line (was the Lua hook ${WRK_REPORT} loaded?): ${stdout.trim().slice(0, 300)}`);
  const j = JSON.parse(line.slice('WEFT_WRK_JSON '.length)) as WrkJson;
  const seconds = j.duration_us / 1e6;
  if (!(seconds > 0)) throw new Error(`wrk reported a run of ${seconds} s`);
  return {
    requests: j.requests, seconds, rps: j.requests / seconds,
    errors: j.connect_errors + j.read_errors + j.write_errors + j.status_errors + j.timeouts,
    p50Ms: j.p50_us / 1000, p90Ms: j.p90_us / 1000, p99Ms: j.p99_us / 1000,
  };
}

export async function runWrk(where: Placement, r: WrkRun): Promise<WrkResult> {
  const res = await runTool(where, wrkCommand(r), (r.seconds + 15) * 1000);
  if (res.status !== 0) throw new Error(failure('wrk', res));
  return parseWrk(res.stdout);
}
