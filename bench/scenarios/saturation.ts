// 1. HTTP/1.1 saturation: wrk as fast as it can over keep-alive connections, 1 KiB
// responses. One wrk thread pinned to the load CPU, so the proxy keeps the other core.

import { runWrk } from '../tools/wrk.ts';
import type { Scenario } from './types.ts';

export const saturation: Scenario = {
  id: 'saturation',
  title: 'HTTP/1.1 saturation, 1 KiB responses',
  method: 'wrk -t1 (taskset to the load CPU), keep-alive, GET returning 1 KiB from HAProxy `http-request return` in the server pod; --latency percentiles via a Lua done() hook',
  variants: ['same-node', 'cross-node'],
  metrics: [
    { id: 'rps', label: 'requests/s', unit: 'req/s', better: 'higher' },
    { id: 'p50_ms', label: 'p50 latency', unit: 'ms', better: 'lower' },
    { id: 'p99_ms', label: 'p99 latency', unit: 'ms', better: 'lower' },
  ],
  run: async (ctx, route) => {
    const t = route.target('http');
    const r = await runWrk(route.client, {
      url: `http://${t.host}:${t.port}/`, connections: ctx.options.wrkConnections, threads: 1,
      seconds: ctx.options.loadSeconds, cpus: ctx.options.loadCpu,
    });
    if (r.requests === 0) throw new Error('wrk completed no request');
    return {
      values: { rps: r.rps, p50_ms: r.p50Ms, p99_ms: r.p99Ms },
      notes: r.errors > 0 ? [`wrk counted ${r.errors} errors in ${r.requests} requests`] : [],
    };
  },
};
