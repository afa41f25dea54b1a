// Which sources eBPF inbound capture leaves alone: the node's own IPv4 addresses, every one
// of them. Kubelet's probes and the agent's own connections to a pod leave the node from
// whichever address the kernel picks to reach that pod (the pods' bridge or gateway address,
// not necessarily --capture-address: under the chart that is $(HOST_IP)); exempting only the
// configured addresses captured the agent's connections back into 15006.

import type { NetworkInterfaceInfo } from 'node:os';

/** The configured addresses (bar 0.0.0.0) and every non-loopback IPv4 address of the node, sorted. Pure. */
export function inboundExemptSources(configured: readonly string[], interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): string[] {
  const out = new Set(configured.filter((a) => a !== '0.0.0.0'));
  for (const addrs of Object.values(interfaces)) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) out.add(a.address);
  }
  return [...out].sort();
}
