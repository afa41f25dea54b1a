// The node agent's configuration: read once from flags (and the environment for what a
// DaemonSet passes that way), validated, frozen. The one place the agent reads flags.

import { DEFAULT_TRUST_DOMAIN } from '../model/types.ts';
import {
  badFlag, bool, decimal, hostPort, int, ip, list, logLevel, oneOf, parseFlagArgs, str, trustDomain, type FlagTable, type FlagValues,
} from './flags.ts';

export { CONFIG_ERROR } from './flags.ts';

export const CAPTURE_MODES = ['auto', 'ebpf', 'iptables', 'off'] as const;
export type CaptureMode = typeof CAPTURE_MODES[number];

export interface AgentPorts {
  readonly outbound: number;
  readonly inboundPlain: number;
  readonly tunnel: number;
  readonly admin: number;
  readonly metrics: number;
  readonly ready: number;
}

export const DEFAULT_PORTS: AgentPorts = Object.freeze({ outbound: 15001, inboundPlain: 15006, tunnel: 15008, admin: 15000, metrics: 15020, ready: 15021 });

export interface AgentConfig {
  readonly node: string;
  readonly mode: CaptureMode;
  /** The node's address as its pods see it: where captured connections are sent. */
  readonly captureAddress: string;
  /** This node's address as other nodes see it: where their tunnels connect. */
  readonly tunnelAddress: string;
  /** The bpftool command (eBPF mode and the auto probe). */
  readonly bpftool: string;
  /** The interface pods' traffic arrives on (iptables mode narrows its match to it); undefined: any (pods are matched by address). */
  readonly podInterface: string | undefined;
  /** Name of the bpffs pin directory /sys/fs/bpf/weft/<pinName>; unique per node on a host. */
  readonly pinName: string;
  /**
   * Override for where a pod's cgroup is (a template with {namespace}, {name}, {uid}); empty:
   * found from the pod's UID where the kubelet puts it (either cgroup driver, any QoS class).
   */
  readonly podCgroup: string;
  /** The agent's own pod UID (POD_UID from the downward API): its pod cgroup answers SO_ORIGINAL_DST. */
  readonly ownPodUid: string | undefined;
  readonly ports: AgentPorts;
  readonly excludePorts: readonly number[];
  readonly excludeCidrs: readonly string[];
  /** Pod ports whose inbound connections are not captured (they bypass STRICT: use sparingly). */
  readonly excludeInboundPorts: readonly number[];
  /** Where config comes from: the control plane, or a local manifests directory (standalone). */
  readonly source: { readonly kind: 'control'; readonly address: string; readonly tokenFile: string | undefined; readonly caFile: string | undefined } | { readonly kind: 'manifests'; readonly dir: string };
  readonly trustDomain: string;
  /** Keep capture in place on shutdown, so traffic cannot bypass the mesh while the agent restarts. */
  readonly failClosed: boolean;
  /** Same-node kernel splice: 'auto' loads it where the kernel can (else user space, said once); 'off' never. */
  readonly kernelSplice: 'auto' | 'off';
  readonly workers: number;
  readonly drainMs: number;
  readonly readyFile: string | undefined;
  /** Where the agent keeps its state (node certificate); created when missing. */
  readonly stateDir: string;
  readonly logLevel: string;
  /** Serve HTTP/1.1, h2c and gRPC request by request (else every connection is spliced). */
  readonly l7: boolean;
  /** Longest wait for the client's first bytes on a port that declares no protocol (1..100 ms). */
  readonly sniffMs: number;
  /** HTTP requests of one source pod served at once by this agent (split over the workers); more wait their turn. */
  readonly maxRequestsPerSource: number;
  /** Descriptors one source's connections may hold, all workers together (--max-fds-per-source); undefined: the budget's rule. */
  readonly maxFdsPerSource: number | undefined;
  /** Holding back the source pod that saturates a proxy worker's event loop (source-fairness.ts); undefined: off. */
  readonly fairness: AgentFairness | undefined;
}

/** The fairness flags, for the whole agent (rates and queues are split over the workers). */
export interface AgentFairness {
  /** Worker event-loop utilisation (0..1) at which the heaviest source is held back. */
  readonly highWater: number;
  /** Utilisation below which held sources are let back up. */
  readonly lowWater: number;
  /** Admissions (connections + requests) per second a held source always gets, all workers together. */
  readonly minRate: number;
  /** Requests of a held source waiting at once, all workers together; more are refused (503 OL). */
  readonly maxWaiting: number;
}

export type AgentFlags = FlagValues;

export const AGENT_USAGE = `weft agent --node NAME [--mode auto|ebpf|iptables|off] --capture-address IP [--tunnel-address IP]
            (--control HOST:PORT [--token-file F] [--ca-file F] | --manifests DIR)
            [--pod-cgroup TEMPLATE (override; default: by pod UID)] [--pin-name NAME] [--pod-interface IF] [--exclude-ports P,..] [--exclude-cidrs C,..]
            [--exclude-inbound-ports P,..] [--workers N] [--drain-seconds S] [--fail-closed] [--ready-file F] [--state-dir DIR] [--trust-domain TD] [--log-level L]
            [--bpftool PATH] [--l7 on|off] [--sniff-ms MS] [--kernel-splice auto|off] [--max-requests-per-source N] [--max-fds-per-source N]
            [--fairness on|off] [--fairness-high-water U] [--fairness-low-water U] [--fairness-min-rate N] [--fairness-max-waiting N]
  --l7 off        splice every connection (no per-request routing, balancing or request metrics)
  --sniff-ms MS   how long to wait for the client's first bytes on a port that declares no protocol (1-100, default 100)
  --max-requests-per-source N  HTTP requests of one pod the agent serves at once (default 1024); more wait their
                  turn, so one pod flooding the agent cannot crowd out the others' requests
  --max-fds-per-source N  descriptors one pod's connections may hold in the agent, all workers together (an
                  outbound connection counts 2, one arriving through the tunnel 1); past it, its new connections are
                  reset (default a quarter of the agent's connection budget, at most 16,384; never more than the budget)
  --fairness on   when a proxy worker's event loop is busy --fairness-high-water of the time (default 0.8, less
                  where the workers would otherwise leave the pods under a core: 0.4 for 2 workers on 2 cores), the
                  pod asking for most of its work gets its new connections and requests paced at half its
                  rate, halving while the loop stays busy, never below --fairness-min-rate per second (default
                  200; a pod asking for no more is never held), let back up below --fairness-low-water (default 0.6 of the high water); past --fairness-max-waiting
                  (default 512) of its requests waiting, more get 503 (flag OL); its waiting connections are bounded by the per-source descriptor cap
  --kernel-splice auto  same-node opaque TCP moves socket to socket in the kernel where it can (default)
  --mode auto     eBPF when every feature it needs is here, else iptables (one log line says which and why)`;

const s = { type: 'string' } as const;
export const AGENT_FLAGS: FlagTable = Object.freeze({
  node: s, mode: s, 'capture-address': s, 'tunnel-address': s, control: s, 'token-file': s, 'ca-file': s, manifests: s,
  'pod-cgroup': s, 'pin-name': s, 'pod-interface': s, 'exclude-ports': s, 'exclude-cidrs': s, 'exclude-inbound-ports': s, workers: s, 'drain-seconds': s,
  'fail-closed': { type: 'boolean' }, 'ready-file': s, 'state-dir': s, 'trust-domain': s, 'log-level': s, bpftool: s,
  l7: s, 'sniff-ms': s, 'kernel-splice': s, 'max-requests-per-source': s, 'max-fds-per-source': s,
  fairness: s, 'fairness-high-water': s, 'fairness-low-water': s, 'fairness-min-rate': s, 'fairness-max-waiting': s,
});

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** `weft agent` argv -> frozen config. */
export function agentConfigFromArgv(argv: readonly string[], env: NodeJS.ProcessEnv, cores: number): AgentConfig {
  return agentConfig(parseFlagArgs(argv, AGENT_FLAGS, AGENT_USAGE), env, cores);
}

/** Default proxy workers: like ztunnel's max(2, cores/4), bounded by the cores there are. */
export function defaultWorkers(cores: number): number {
  return Math.max(1, Math.min(cores, Math.max(2, Math.floor(cores / 4))));
}

/**
 * Default fairness high water: 0.8 of each worker, but never so much that the workers together
 * would leave less than one core to the node's pods (on 2 cores with 2 workers: 0.4 each).
 */
export function defaultHighWater(cores: number, workers: number): number {
  const share = (0.8 * Math.max(1, cores - 1)) / Math.max(1, workers);
  return Math.round(Math.min(0.8, Math.max(0.3, share)) * 100) / 100;
}

export function agentConfig(flags: AgentFlags, env: NodeJS.ProcessEnv, cores: number): AgentConfig {
  const node = str(flags, 'node') ?? env.NODE_NAME;
  if (node === undefined || !NODE_NAME.test(node)) badFlag('node', node, 'is required: a Kubernetes node name (or set NODE_NAME)');
  const mode = oneOf(flags, 'mode', CAPTURE_MODES, 'ebpf');
  const captureAddress = ip(flags, 'capture-address', mode === 'off' ? '127.0.0.1' : undefined);
  const control = str(flags, 'control');
  const manifests = str(flags, 'manifests');
  if ((control === undefined) === (manifests === undefined)) badFlag('control', control, 'give exactly one of --control HOST:PORT or --manifests DIR');
  if (control !== undefined) hostPort(flags, 'control');
  const ports = (flag: string): number[] => list(flags, flag).map((p) => {
    if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) badFlag(flag, p, 'must list ports 1-65535');
    return Number(p);
  });
  const excludePorts = ports('exclude-ports');
  const podCgroup = str(flags, 'pod-cgroup') ?? '';
  if (podCgroup !== '' && !podCgroup.startsWith('/')) badFlag('pod-cgroup', podCgroup, 'must be an absolute path template with {uid}, {namespace} or {name}');
  const workers = int(flags, 'workers', defaultWorkers(cores), 1, 64);
  const highWater = decimal(flags, 'fairness-high-water', defaultHighWater(cores, workers), 0.05, 1);
  const lowWater = decimal(flags, 'fairness-low-water', Math.round(highWater * 0.6 * 100) / 100, 0, 1);
  if (lowWater >= highWater) badFlag('fairness-low-water', String(lowWater), `must be below --fairness-high-water (${highWater})`);
  const fairness = oneOf(flags, 'fairness', ['on', 'off'], 'on') === 'off' ? undefined : Object.freeze({
    highWater, lowWater, minRate: int(flags, 'fairness-min-rate', 200, 1, 1_000_000), maxWaiting: int(flags, 'fairness-max-waiting', 512, 0, 1_000_000),
  });
  const ownPodUid = env.POD_UID === undefined || env.POD_UID === '' ? undefined : env.POD_UID;
  return Object.freeze({
    node,
    mode,
    captureAddress,
    tunnelAddress: ip(flags, 'tunnel-address', '0.0.0.0'),
    bpftool: str(flags, 'bpftool') ?? 'bpftool',
    podInterface: str(flags, 'pod-interface'),
    pinName: str(flags, 'pin-name') ?? node,
    podCgroup,
    ownPodUid,
    ports: DEFAULT_PORTS,
    excludePorts: Object.freeze(excludePorts),
    excludeCidrs: Object.freeze(list(flags, 'exclude-cidrs')),
    excludeInboundPorts: Object.freeze(ports('exclude-inbound-ports')),
    source: control !== undefined
      ? Object.freeze({ kind: 'control' as const, address: control, tokenFile: str(flags, 'token-file'), caFile: str(flags, 'ca-file') })
      : Object.freeze({ kind: 'manifests' as const, dir: manifests ?? '' }),
    trustDomain: trustDomain(flags, DEFAULT_TRUST_DOMAIN),
    failClosed: bool(flags, 'fail-closed'),
    kernelSplice: oneOf(flags, 'kernel-splice', ['auto', 'off'] as const, 'auto'),
    workers,
    drainMs: int(flags, 'drain-seconds', 5, 0, 3600) * 1000,
    readyFile: str(flags, 'ready-file'),
    stateDir: str(flags, 'state-dir') ?? `/run/weft/agent/${node}`,
    logLevel: logLevel(flags),
    l7: oneOf(flags, 'l7', ['on', 'off'], 'on') === 'on',
    sniffMs: int(flags, 'sniff-ms', 100, 1, 100),
    maxRequestsPerSource: int(flags, 'max-requests-per-source', 1024, 1, 1_000_000),
    maxFdsPerSource: flags['max-fds-per-source'] === undefined ? undefined : int(flags, 'max-fds-per-source', 0, 2, 16_777_216),
    fairness,
  });
}
