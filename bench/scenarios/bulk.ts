// 3. Bulk transfer: iperf3 with one and with eight TCP streams, received Gbit/s.

import { runIperf } from '../tools/iperf3.ts';
import type { Scenario } from './types.ts';

export const bulk: Scenario = {
  id: 'bulk',
  title: 'Bulk TCP transfer',
  method: 'iperf3 -J -P 1 and -P 8 (client and server on the load CPU), Gbit/s received by the server',
  variants: ['same-node', 'cross-node'],
  metrics: [
    { id: 'gbps_1', label: '1 stream', unit: 'Gbit/s', better: 'higher' },
    { id: 'gbps_8', label: '8 streams', unit: 'Gbit/s', better: 'higher' },
  ],
  run: async (ctx, route) => {
    const t = route.target('iperf');
    const base = { host: t.host, port: t.port, seconds: ctx.options.bulkSeconds, cpus: ctx.options.loadCpu };
    const one = await runIperf(route.client, { ...base, streams: 1 });
    const eight = await runIperf(route.client, { ...base, streams: 8 });
    return { values: { gbps_1: one, gbps_8: eight }, notes: [] };
  },
};
