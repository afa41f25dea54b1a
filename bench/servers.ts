// The servers in every server pod, the same for every path: HAProxy answering each HTTP
// request with a fixed 1 KiB body (HTTP/1.1 or h2c) (`http-request return`, no backend: far faster than the
// sample Node echo server, so the proxies are what a run measures), sockperf's server,
// iperf3's server and the connection holder. All pinned to the load CPU (README: pinning).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDetached, type Placement } from '../src/sim/processes.ts';
import { PORTS } from './cluster.ts';
import type { StartedProcesses } from './pids.ts';
import { failure, runTool } from './tools/exec.ts';
import { iperfServerCommand } from './tools/iperf3.ts';
import { sockperfServerCommand } from './tools/sockperf.ts';

export const HOLDER = join(import.meta.dirname, 'tools', 'holder.ts');
export const RESPONSE_BYTES = 1024;
const READY_TIMEOUT_MS = 15_000;

export function httpServerConfig(bodyFile: string, maxconn: number): string {
  return `# weft bench: the HTTP server in every server pod (1 KiB fixed response)
global
  nbthread 1
  maxconn ${maxconn}

defaults
  mode http
  maxconn ${maxconn}
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s

frontend bench_http
  bind 0.0.0.0:${PORTS.http}
  bind 0.0.0.0:${PORTS.http2} proto h2
  http-request return status 200 content-type application/octet-stream file ${bodyFile}
`;
}

export interface ServerSetup {
  readonly workDir: string;
  readonly cpus: string;
  /** The holder server exits by itself after this. */
  readonly lifetimeSeconds: number;
  readonly started: StartedProcesses;
  /** Hard fd limit: the holder server raises its soft limit to it. */
  readonly fdLimit: number;
}

/** Writes the shared config files once; returns the HAProxy config path. */
export function writeServerFiles(workDir: string, maxconn: number): string {
  const body = join(workDir, 'body-1k.bin');
  writeFileSync(body, Buffer.alloc(RESPONSE_BYTES, 'x'));
  const cfg = join(workDir, 'server-haproxy.cfg');
  writeFileSync(cfg, httpServerConfig(body, maxconn));
  return cfg;
}

/** Starts the four servers in `pod`; resolves once all of them listen. Returns their PIDs. */
export async function startServers(pod: Placement, podName: string, setup: ServerSetup, haproxyCfg: string): Promise<number[]> {
  const log = (what: string) => join(setup.workDir, `${podName}-${what}.log`);
  const env = { PATH: process.env.PATH };
  const commands: [string, string[]][] = [
    ['http', ['taskset', '-c', setup.cpus, 'haproxy', '-db', '-f', haproxyCfg]],
    ['sockperf', sockperfServerCommand(PORTS.sockperf, setup.cpus)],
    ['iperf3', iperfServerCommand(PORTS.iperf, setup.cpus)],
    ['holder', ['taskset', '-c', setup.cpus, 'prlimit', `--nofile=${setup.fdLimit}:${setup.fdLimit}`, process.execPath, HOLDER, 'serve', String(PORTS.hold), String(setup.lifetimeSeconds)]],
  ];
  const pids = commands.map(([what, cmd]) => setup.started.add(startDetached(pod, cmd, env, log(what))));
  await waitListening(pod, Object.values(PORTS), `servers in ${podName} (logs: ${log('*')})`);
  return pids;
}

/** Polls `ss` inside `where` until every port in `ports` has a listener. */
export async function waitListening(where: Placement, ports: readonly number[], what: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const r = await runTool(where, ['ss', '-Hltn'], 5000);
    if (r.status !== 0) throw new Error(failure('ss -Hltn', r));
    // Lines are `LISTEN 0 4096 0.0.0.0:8090 0.0.0.0:*`: the local address is the 4th field.
    const local = r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[3] ?? '');
    const listening = new Set(local.map((a) => Number(a.slice(a.lastIndexOf(':') + 1))));
    const missing = ports.filter((p) => !listening.has(p));
    if (missing.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${what}: nothing listens on port(s) ${missing.join(', ')} after ${READY_TIMEOUT_MS / 1000} s`);
    await sleep(100);
  }
}
