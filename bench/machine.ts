// What the numbers were measured on: they mean little without the machine, the kernel,
// the tool versions and how busy the machine was.

import { spawnSync } from 'node:child_process';
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';

export interface MachineInfo {
  readonly hostname: string;
  readonly cpuModel: string;
  readonly cpus: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly tools: Readonly<Record<string, string>>;
  readonly loadAverageAtStart: readonly number[];
}

function firstLine(cmd: string, args: string[], pattern: RegExp): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  return pattern.exec(text)?.[1] ?? 'unknown';
}

export function machineInfo(): MachineInfo {
  return {
    hostname: hostname(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cpus: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    tools: {
      haproxy: firstLine('haproxy', ['-v'], /HAProxy version (\S+)/),
      wrk: firstLine('wrk', ['-v'], /wrk (\S+)/),
      sockperf: firstLine('sockperf', ['--version'], /version (\S+)/),
      iperf3: firstLine('iperf3', ['--version'], /iperf (\S+)/),
    },
    loadAverageAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
