// Pod to pod, no proxy: the baseline every other path is compared with.

import { PORTS, type BenchCluster } from '../cluster.ts';
import type { BenchPath } from './types.ts';

export function directPath(cluster: BenchCluster): BenchPath {
  return {
    name: 'direct',
    unavailable: undefined,
    route: (variant) => {
      const server = cluster.plain.server[variant];
      return {
        client: cluster.pod(cluster.plain.client),
        server: cluster.pod(server),
        target: (service) => ({ host: server.ip, port: PORTS[service] }),
        proxyPids: () => [],
        proxyCount: 0,
      };
    },
    close: () => Promise.resolve(),
  };
}
