// The redirector's inputs, validated once and frozen. Both modes take the same options
// and apply the same exclusions, so switching --mode never changes what is captured.

import { isAbsolute } from 'node:path';
import { isIPv4 } from 'node:net';
import { parseCidr, type Cidr } from '../model/cidr.ts';
import { redirectError, RedirectErrors } from './errors.ts';

/** The agent's own listening ports: never captured, whatever the user lists. */
export const AGENT_PORTS: readonly number[] = Object.freeze([15000, 15001, 15006, 15008, 15020, 15021]);
export const DNS_PORT = 53;
export const LOOPBACK_CIDR = '127.0.0.0/8';

/** A pod whose outbound TCP is captured. */
export interface CaptureTarget {
  /** Stable id chosen by the caller (e.g. `namespace/name`); at most 127 bytes. */
  readonly podId: string;
  /** The pod's IPv4 address. */
  readonly ip: string;
  /** Absolute path of the pod's cgroup in the cgroup2 filesystem (eBPF mode attaches there). */
  readonly cgroupPath: string;
  /**
   * The pod's network namespace (e.g. /proc/<pid>/ns/net, /run/netns/<name>), for eBPF inbound
   * capture. When absent it is found from the processes in `cgroupPath`, and in every case
   * it must hold `ip` (so that the node's or the host's namespace is never taken for it).
   */
  readonly netnsPath?: string;
  /**
   * The pod's IPv6 addresses, if any. Capture is IPv4 only, so such a pod is refused
   * (WEFT_REDIRECT_IPV6_UNSUPPORTED) rather than captured on one family and open on the other.
   */
  readonly ipv6?: readonly string[];
}

export interface RedirectorOptions {
  /** Node name; names the pin directory /sys/fs/bpf/weft/<node>. */
  readonly node: string;
  /** The IPv4 address pods use as their gateway: where captured connections go. */
  readonly agentAddress: string;
  /** The agent's outbound capture port (15001). */
  readonly outboundPort: number;
  /** Destination ports never captured, in addition to the agent's ports and DNS. */
  readonly excludePorts: readonly number[];
  /** Destination CIDRs never captured, in addition to loopback and the agent's address. */
  readonly excludeCidrs: readonly string[];
  /** Absolute cgroup2 path of the agent's own cgroup (eBPF mode answers SO_ORIGINAL_DST there). */
  readonly agentCgroup: string;
  /** The pods' bridge on the node (iptables mode matches it as the incoming interface). */
  readonly podInterface?: string;
  /**
   * Absolute cgroup2 path of the node's cgroup tree (default: the cgroup2 mount): the only
   * place searched for weft programs an earlier agent left attached. The simulator nests
   * several nodes (and clusters) in one hierarchy, and one node's agent sees only its own
   * node's pins: swept machine-wide, every other node's programs looked orphaned.
   */
  readonly nodeCgroupRoot?: string;
  /**
   * Inbound capture: connections to enrolled pods that did not come through the mesh go to
   * the agent (inboundPort). In eBPF mode each pod gets `inboundSlots` sockets (one per proxy
   * worker); 0 turns inbound capture off. Default 0.
   */
  readonly inboundSlots?: number;
  /** The agent's inbound plaintext port (15006), where iptables mode redirects inbound connections. */
  readonly inboundPort?: number;
  /**
   * The node's own addresses (kubelet probes, the agent itself). eBPF mode never captures them
   * inbound (iptables mode needs no exemption: those leave through OUTPUT); both modes pin each
   * pod's neighbour entry for them (pod-neighbours.ts). Default [agentAddress].
   */
  readonly inboundExemptSources?: readonly string[];
  /** Pod ports never captured inbound. */
  readonly excludeInboundPorts?: readonly number[];
}

export interface RedirectorConfig {
  readonly node: string;
  readonly agentAddress: string;
  readonly outboundPort: number;
  /** Sorted, unique; includes AGENT_PORTS, DNS and outboundPort. */
  readonly excludePorts: readonly number[];
  /** Unique; includes loopback and agentAddress/32. */
  readonly excludeCidrs: readonly Cidr[];
  readonly agentCgroup: string;
  readonly podInterface: string | undefined;
  readonly nodeCgroupRoot: string | undefined;
  readonly inboundSlots: number;
  readonly inboundPort: number;
  /** Unique, sorted. */
  readonly inboundExemptSources: readonly string[];
  /** Unique, sorted. */
  readonly excludeInboundPorts: readonly number[];
}

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const POD_ID = /^[A-Za-z0-9][A-Za-z0-9._:/@+=-]*$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
export const MAX_POD_ID_BYTES = 127;
/** bpf/redirect.bpf.c weft_inbound_exempt max_entries. */
export const MAX_INBOUND_EXEMPT = 64;

/** bpf/redirect.bpf.c MAX_SLOTS: inbound sockets per pod, one per proxy worker. */
export const MAX_INBOUND_SLOTS = 64;
export const MAX_CGROUP_PATH_BYTES = 383;

function bad(field: string, value: unknown, why: string): never {
  throw redirectError(RedirectErrors.BAD_OPTION, `redirector option ${field}=${JSON.stringify(value)}: ${why}`);
}

// Not Array.isArray: on a typed readonly array it narrows to any[].
function isArray(x: unknown): boolean {
  return Array.isArray(x);
}

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** A node name is also a directory name under /sys/fs/bpf/weft: refuse anything else. */
export function validateNode(node: string): string {
  if (typeof node !== 'string' || !NODE_NAME.test(node)) {
    bad('node', node, 'must be a Kubernetes node name (lowercase letters, digits, "-" and ".")');
  }
  return node;
}

export function validateOptions(opts: RedirectorOptions): RedirectorConfig {
  validateNode(opts.node);
  if (typeof opts.agentAddress !== 'string' || !isIPv4(opts.agentAddress) || opts.agentAddress === '0.0.0.0') {
    bad('agentAddress', opts.agentAddress, 'must be a unicast IPv4 address');
  }
  if (!isPort(opts.outboundPort)) bad('outboundPort', opts.outboundPort, 'must be an integer port 1-65535');
  if (!isArray(opts.excludePorts)) bad('excludePorts', opts.excludePorts, 'must be an array of ports');
  opts.excludePorts.forEach((p, i) => {
    if (!isPort(p)) bad(`excludePorts[${i}]`, p, 'must be an integer port 1-65535');
  });
  if (!isArray(opts.excludeCidrs)) bad('excludeCidrs', opts.excludeCidrs, 'must be an array of IPv4 CIDRs');
  const cidrs = new Map<string, Cidr>();
  for (const [i, text] of [LOOPBACK_CIDR, `${opts.agentAddress}/32`, ...opts.excludeCidrs].entries()) {
    let cidr: Cidr;
    try {
      cidr = parseCidr(text);
    } catch (err: unknown) {
      bad(`excludeCidrs[${i - 2}]`, text, err instanceof Error ? err.message : String(err));
    }
    cidrs.set(cidr.text, cidr);
  }
  if (typeof opts.agentCgroup !== 'string' || !isAbsolute(opts.agentCgroup)) {
    bad('agentCgroup', opts.agentCgroup, 'must be an absolute path in the cgroup2 filesystem');
  }
  if (opts.nodeCgroupRoot !== undefined && (typeof opts.nodeCgroupRoot !== 'string' || !isAbsolute(opts.nodeCgroupRoot))) {
    bad('nodeCgroupRoot', opts.nodeCgroupRoot, 'must be an absolute path in the cgroup2 filesystem');
  }
  if (opts.podInterface !== undefined && (typeof opts.podInterface !== 'string' || !IFNAME.test(opts.podInterface))) {
    bad('podInterface', opts.podInterface, 'must be a network interface name (1-15 characters)');
  }
  const ports = [...new Set([...AGENT_PORTS, DNS_PORT, opts.outboundPort, ...opts.excludePorts])].sort((a, b) => a - b);
  const slots = opts.inboundSlots ?? 0;
  if (!Number.isInteger(slots) || slots < 0 || slots > MAX_INBOUND_SLOTS) bad('inboundSlots', slots, `must be an integer from 0 to ${MAX_INBOUND_SLOTS} (one per proxy worker)`);
  const inboundPort = opts.inboundPort ?? 15006;
  if (!isPort(inboundPort)) bad('inboundPort', inboundPort, 'must be an integer port 1-65535');
  const exempt = opts.inboundExemptSources ?? [opts.agentAddress];
  if (!isArray(exempt)) bad('inboundExemptSources', exempt, 'must be an array of IPv4 addresses');
  if (new Set(exempt).size > MAX_INBOUND_EXEMPT) bad('inboundExemptSources', `${new Set(exempt).size} addresses`, `at most ${MAX_INBOUND_EXEMPT} (the node's own addresses; bpf/redirect.bpf.c weft_inbound_exempt)`);
  exempt.forEach((ip, i) => {
    if (typeof ip !== 'string' || !isIPv4(ip) || ip === '0.0.0.0') bad(`inboundExemptSources[${i}]`, ip, 'must be a unicast IPv4 address');
  });
  const inboundExcluded = opts.excludeInboundPorts ?? [];
  if (!isArray(inboundExcluded)) bad('excludeInboundPorts', inboundExcluded, 'must be an array of ports');
  inboundExcluded.forEach((p, i) => {
    if (!isPort(p)) bad(`excludeInboundPorts[${i}]`, p, 'must be an integer port 1-65535');
  });
  return Object.freeze({
    node: opts.node,
    agentAddress: opts.agentAddress,
    outboundPort: opts.outboundPort,
    excludePorts: Object.freeze(ports),
    excludeCidrs: Object.freeze([...cidrs.values()]),
    agentCgroup: opts.agentCgroup.replace(/\/+$/, ''),
    podInterface: opts.podInterface,
    nodeCgroupRoot: opts.nodeCgroupRoot?.replace(/(.)\/+$/, '$1'),
    inboundSlots: slots,
    inboundPort,
    inboundExemptSources: Object.freeze([...new Set(exempt)].sort()),
    excludeInboundPorts: Object.freeze([...new Set(inboundExcluded)].sort((a, b) => a - b)),
  });
}

function badTarget(field: string, value: unknown, why: string): never {
  throw redirectError(RedirectErrors.BAD_TARGET, `capture target ${field}=${JSON.stringify(value)}: ${why}`);
}

/** Checks a pod before enrolment; the cgroup's existence is checked by the eBPF mode, which needs it. */
export function validateTarget(pod: CaptureTarget): CaptureTarget {
  if (typeof pod.podId !== 'string' || pod.podId === '' || Buffer.byteLength(pod.podId) > MAX_POD_ID_BYTES || pod.podId.includes('\0')) {
    badTarget('podId', pod.podId, `must be a non-empty string of at most ${MAX_POD_ID_BYTES} bytes`);
  }
  // The id is also kept in an iptables rule comment, where quotes and spaces would need escaping.
  if (!POD_ID.test(pod.podId)) badTarget('podId', pod.podId, 'may hold only letters, digits and . _ : / @ + = -');
  if (pod.ipv6 !== undefined && pod.ipv6.length > 0) {
    throw redirectError(RedirectErrors.IPV6_UNSUPPORTED, `pod ${pod.podId} has IPv6 address(es) ${pod.ipv6.join(', ')}: weft captures IPv4 only, so it refuses to capture this pod rather than leave its IPv6 traffic outside the mesh (give the pod IPv4 only, or label it weft.dev/mesh: disabled)`);
  }
  if (typeof pod.ip !== 'string' || !isIPv4(pod.ip) || pod.ip === '0.0.0.0') badTarget('ip', pod.ip, 'must be an IPv4 address');
  if (typeof pod.cgroupPath !== 'string' || !isAbsolute(pod.cgroupPath) || Buffer.byteLength(pod.cgroupPath) > MAX_CGROUP_PATH_BYTES) {
    badTarget('cgroupPath', pod.cgroupPath, `must be an absolute path of at most ${MAX_CGROUP_PATH_BYTES} bytes`);
  }
  if (pod.netnsPath !== undefined && (typeof pod.netnsPath !== 'string' || !isAbsolute(pod.netnsPath) || Buffer.byteLength(pod.netnsPath) > 500)) {
    badTarget('netnsPath', pod.netnsPath, 'must be an absolute path of at most 500 bytes');
  }
  return Object.freeze({
    podId: pod.podId, ip: pod.ip, cgroupPath: pod.cgroupPath.replace(/\/+$/, ''), ...(pod.netnsPath === undefined ? {} : { netnsPath: pod.netnsPath }),
  });
}
