// The simulator's address plan. Everything comes from the RFC 2544 benchmarking range
// 198.18.0.0/15 and lives only inside the cluster's own network namespaces, so two
// clusters may reuse the same addresses side by side.
//
//   198.18.0.0/24      underlay: node K is 198.18.0.(10+K), the control plane .2
//   198.18.K.0/24      node K's pod CIDR: bridge 198.18.K.1, pods from .10
//   198.19.0.0/16      service VIPs (routed nowhere: only capture makes them work)

export const MAX_NODES = 200;
/** The control plane's address on the underlay bridge. */
export const CONTROL_IP = '198.18.0.2';
export const MAX_PODS_PER_NODE = 240;
export const SERVICE_CIDR = '198.19.0.0/16';

export function nodeUnderlayIp(node: number): string {
  return `198.18.0.${10 + node}`;
}

export function podCidr(node: number): string {
  return `198.18.${node}.0/24`;
}

export function nodeBridgeIp(node: number): string {
  return `198.18.${node}.1`;
}

export function podIp(node: number, index: number): string {
  return `198.18.${node}.${10 + index}`;
}

function toInt(ip: string): number {
  return ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function inCidr(ip: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/');
  const mask = Number(bits) === 0 ? 0 : (~0 << (32 - Number(bits))) >>> 0;
  return ((toInt(ip) & mask) >>> 0) === ((toInt(base ?? '') & mask) >>> 0);
}

/** The node number whose pod CIDR holds `ip`, or undefined. */
export function nodeOfPodIp(ip: string): number | undefined {
  if (!inCidr(ip, '198.18.0.0/16')) return undefined;
  const third = Number(ip.split('.')[2]);
  const fourth = Number(ip.split('.')[3]);
  return third >= 1 && third <= MAX_NODES && fourth >= 10 && fourth < 10 + MAX_PODS_PER_NODE ? third : undefined;
}

/** The simulated API server's address on the underlay bridge (`sim up --install`). */
export const KUBE_API_IP = '198.18.0.3';
