// 2. Fixed rate, 1,000 requests/s: the latency a path adds, and what its proxies spend.
// sockperf under-load (open loop: it keeps sending at the rate whatever the replies do),
// every message answered, 1 KiB each way, TCP. CPU = utime+stime of the proxy process
// trees from /proc, before and after; memory = peak RSS during the run minus RSS before.

import { cpuSeconds, rssBytes, rssPeak } from '../tools/procstat.ts';
import { startSockperf } from '../tools/sockperf.ts';
import type { Scenario } from './types.ts';

const MIB = 1024 * 1024;

export const fixedRate: Scenario = {
  id: 'fixed-rate',
  title: 'Fixed rate 1,000 req/s, 1 KiB',
  method: 'sockperf under-load --tcp --mps 1000 --reply-every 1 -m 1024 --full-rtt (round trip); proxy CPU from /proc/<pid>/stat utime+stime, RSS from /proc/<pid>/status',
  variants: ['same-node', 'cross-node'],
  metrics: [
    { id: 'p50_ms', label: 'p50 round trip', unit: 'ms', better: 'lower', addedOverDirect: true },
    { id: 'p90_ms', label: 'p90 round trip', unit: 'ms', better: 'lower', addedOverDirect: true },
    { id: 'p99_ms', label: 'p99 round trip', unit: 'ms', better: 'lower', addedOverDirect: true },
    { id: 'cpu_s_per_1k_req', label: 'proxy CPU s per 1,000 requests (all proxies on the path)', unit: 's', better: 'lower', proxiesOnly: true },
    { id: 'vcpu_per_proxy_per_1k_rps', label: 'vCPU per proxy per 1,000 req/s', unit: 'vCPU', better: 'lower', proxiesOnly: true },
    { id: 'rss_mib_per_proxy_per_1k_rps', label: 'RSS above idle per proxy per 1,000 req/s', unit: 'MiB', better: 'lower', proxiesOnly: true },
    { id: 'messages', label: 'messages sent', unit: '', better: 'higher', hidden: true },
  ],
  run: async (ctx, route) => {
    const t = route.target('sockperf');
    const pids = route.proxyPids();
    const rssIdle = rssBytes(pids);
    const peak = rssPeak(pids);
    const cpuBefore = cpuSeconds(pids, ctx.hz);
    const { result } = startSockperf(route.client, {
      host: t.host, port: t.port, mps: ctx.options.fixedRate, seconds: ctx.options.fixedSeconds,
      messageBytes: 1024, cpus: ctx.options.loadCpu, noWarmup: ctx.options.quick,
    });
    const r = await result.finally(() => peak.stop());
    const peakBytes = peak.stop();
    const cpu = cpuSeconds(pids, ctx.hz) - cpuBefore;
    if (r.sent === 0 || r.observations === 0) throw new Error('sockperf sent or measured nothing');
    const values: Record<string, number> = { p50_ms: r.p50Ms, p90_ms: r.p90Ms, p99_ms: r.p99Ms, messages: r.sent };
    if (route.proxyCount > 0) {
      values.cpu_s_per_1k_req = cpu / (r.sent / 1000);
      // At a steady rate, CPU seconds per 1,000 requests is also vCPU per 1,000 req/s.
      values.vcpu_per_proxy_per_1k_rps = values.cpu_s_per_1k_req / route.proxyCount;
      values.rss_mib_per_proxy_per_1k_rps = Math.max(0, peakBytes - rssIdle) / MIB / (ctx.options.fixedRate / 1000) / route.proxyCount;
    }
    const notes = r.dropped > 0 ? [`sockperf counted ${r.dropped} dropped messages`] : [];
    return { values, notes };
  },
};
