// 5. L7 HTTP, one scenario per protocol (HTTP/1.1 keep-alive, h2c): h2load closed loop for
// the most requests/s a path carries, then at a fixed rate for the latency and the proxies'
// CPU per request. On these ports every proxy parses HTTP: weft's L7 path (Service port
// `http` / `http2`), HAProxy `mode http` (paths/haproxy-config.ts), so the comparison is
// request-level relay against request-level relay. The fixed-rate run comes second, so the
// proxies are warm when their CPU is read.

import type { ServiceKind } from '../cluster.ts';
import { runH2load, type H2loadRun } from '../tools/h2load.ts';
import { cpuSeconds } from '../tools/procstat.ts';
import type { Scenario } from './types.ts';

interface Shape {
  readonly id: string;
  readonly title: string;
  readonly protocol: H2loadRun['protocol'];
  readonly service: ServiceKind;
  /** Closed loop: connections and requests in flight on each. */
  readonly load: (wrkConnections: number) => { readonly clients: number; readonly streams: number };
  /** Fixed rate: connections, streams, and requests/s per connection (sums to the scenario's rate). */
  readonly rate: (total: number) => { readonly clients: number; readonly streams: number; readonly ratePerClient: number };
}

// Floors under --quick's 1 s runs: on a busy machine (load 16) weft's cross-node h2
// fixed-rate run once completed no request within 1 s; a 5 s run of the same did.
const MIN_LOAD_SECONDS = 2;
const MIN_FIXED_SECONDS = 3;

function l7Scenario(s: Shape): Scenario {
  return {
    id: s.id,
    title: s.title,
    method: `h2load -t1${s.protocol === 'h1' ? ' --h1' : ''} (taskset to the load CPU), GET returning 1 KiB; closed loop for requests/s, then --rps at a fixed total rate for latency (per-request --log-file) and proxy CPU (/proc utime+stime of the proxy trees over that run)`,
    variants: ['same-node', 'cross-node'],
    metrics: [
      { id: 'rps', label: 'requests/s, closed loop', unit: 'req/s', better: 'higher' },
      { id: 'p50_ms', label: 'p50 at the fixed rate', unit: 'ms', better: 'lower' },
      { id: 'p99_ms', label: 'p99 at the fixed rate', unit: 'ms', better: 'lower', addedOverDirect: true },
      { id: 'cpu_us_per_req', label: 'proxy CPU per request at the fixed rate (all proxies on the path)', unit: 'µs', better: 'lower', proxiesOnly: true },
      { id: 'rate_rps', label: 'requests/s at the fixed rate', unit: 'req/s', better: 'higher', hidden: true },
    ],
    run: async (ctx, route) => {
      const t = route.target(s.service);
      const url = `http://${t.host}:${t.port}/`;
      const base = { url, protocol: s.protocol, cpus: ctx.options.loadCpu };
      const max = await runH2load(route.client, { ...base, ...s.load(ctx.options.wrkConnections), seconds: Math.max(MIN_LOAD_SECONDS, ctx.options.loadSeconds) });
      if (max.done === 0) throw new Error('h2load completed no request (closed loop)');
      const pids = route.proxyPids();
      const cpuBefore = cpuSeconds(pids, ctx.hz);
      const fixed = await runH2load(route.client, { ...base, ...s.rate(ctx.options.fixedRate), seconds: Math.max(MIN_FIXED_SECONDS, ctx.options.fixedSeconds) });
      const cpu = cpuSeconds(pids, ctx.hz) - cpuBefore;
      if (fixed.done === 0) throw new Error('h2load completed no request (fixed rate)');
      const values: Record<string, number> = { rps: max.rps, p50_ms: fixed.p50Ms, p99_ms: fixed.p99Ms, rate_rps: fixed.rps };
      if (route.proxyCount > 0) values.cpu_us_per_req = (cpu / fixed.done) * 1e6;
      const notes: string[] = [];
      if (max.errors > 0) notes.push(`closed loop: h2load counted ${max.errors} errors in ${max.done} requests`);
      if (fixed.errors > 0) notes.push(`fixed rate: h2load counted ${fixed.errors} errors in ${fixed.done} requests`);
      // A path that cannot keep the rate shows it here rather than as a silently lighter load.
      if (fixed.rps < ctx.options.fixedRate * 0.9) notes.push(`fixed rate: ${Math.round(fixed.rps)} req/s reached of ${ctx.options.fixedRate}`);
      return { values, notes };
    },
  };
}

export const http1: Scenario = l7Scenario({
  id: 'http1',
  title: 'L7 HTTP/1.1 keep-alive (h2load), 1 KiB responses',
  protocol: 'h1',
  service: 'http',
  load: (c) => ({ clients: c, streams: 1 }),
  // 10 connections of 100 req/s each: 1,000 req/s.
  rate: (total) => ({ clients: 10, streams: 1, ratePerClient: total / 10 }),
});

export const http2: Scenario = l7Scenario({
  id: 'h2',
  title: 'L7 HTTP/2 cleartext (h2load), 1 KiB responses',
  protocol: 'h2',
  service: 'http2',
  // Four connections, 16 streams each: multiplexing is the point of h2.
  load: () => ({ clients: 4, streams: 16 }),
  rate: (total) => ({ clients: 2, streams: 16, ratePerClient: total / 2 }),
});
