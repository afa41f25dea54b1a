// iperf3 for bulk transfer: one or several TCP streams, JSON output (-J). 3.12 runs all
// streams in one thread, so the client costs one core whatever -P is.

import type { Placement } from '../../src/sim/processes.ts';
import { failure, runTool } from './exec.ts';

export interface IperfRun {
  readonly host: string;
  readonly port: number;
  readonly streams: number;
  readonly seconds: number;
  readonly cpus: string;
}

export function iperfServerCommand(port: number, cpus: string): string[] {
  return ['taskset', '-c', cpus, 'iperf3', '-s', '-p', String(port)];
}

export function iperfCommand(r: IperfRun): string[] {
  return [
    'taskset', '-c', r.cpus, 'iperf3', '-c', r.host, '-p', String(r.port), '-t', String(r.seconds),
    '-P', String(r.streams), '-J', '--connect-timeout', '3000',
  ];
}

interface IperfJson {
  error?: string;
  end?: { sum_received?: { bits_per_second?: number; bytes?: number } };
}

/** Received Gbit/s (what arrived at the server, not what the client queued). */
export function parseIperf(stdout: string): number {
  let j: IperfJson;
  try {
    j = JSON.parse(stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 -J printed no JSON: ${stdout.trim().slice(0, 200)}`);
  }
  if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`);
  const bps = j.end?.sum_received?.bits_per_second;
  if (bps === undefined || !(bps > 0)) throw new Error('iperf3 JSON has no end.sum_received.bits_per_second');
  return bps / 1e9;
}

export async function runIperf(where: Placement, r: IperfRun): Promise<number> {
  const res = await runTool(where, iperfCommand(r), (r.seconds + 15) * 1000);
  if (res.status !== 0 && res.stdout.trim() === '') throw new Error(failure('iperf3', res));
  return parseIperf(res.stdout);
}
