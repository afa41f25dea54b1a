// 4. New connections per second: every request on a fresh connection (wrk with
// `Connection: close`), so each request pays connect, accept and, across nodes through
// HAProxy, a TLS handshake (weft may reuse a pooled tunnel: that is the point of pooling).

import { runWrk } from '../tools/wrk.ts';
import type { Scenario } from './types.ts';

export const connRate: Scenario = {
  id: 'conn-rate',
  title: 'New connections per second (one request each)',
  method: 'wrk -t1 -H "Connection: close" (a new TCP connection per request), 1 KiB responses',
  variants: ['same-node', 'cross-node'],
  metrics: [
    { id: 'cps', label: 'connections/s', unit: 'conn/s', better: 'higher' },
    { id: 'p99_ms', label: 'p99 latency', unit: 'ms', better: 'lower' },
  ],
  run: async (ctx, route) => {
    const t = route.target('http');
    const r = await runWrk(route.client, {
      url: `http://${t.host}:${t.port}/`, connections: Math.min(16, ctx.options.wrkConnections), threads: 1,
      seconds: ctx.options.loadSeconds, cpus: ctx.options.loadCpu, closeEach: true,
    });
    if (r.requests === 0) throw new Error('wrk completed no request');
    return {
      values: { cps: r.rps, p99_ms: r.p99Ms },
      notes: r.errors > 0 ? [`wrk counted ${r.errors} errors in ${r.requests} requests`] : [],
    };
  },
};
