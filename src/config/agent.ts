// The node agent's configuration: read once from flags (and the environment for what a
// DaemonSet passes that way), validated, frozen. The one place the agent reads flags.

import { isIPv4 } from 'node:net';
import { WeftError } from '../core/errors.ts';

export const CONFIG_ERROR = 'WEFT_CONFIG_INVALID';

export type CaptureMode = 'ebpf' | 'iptables' | 'off';

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
  /** The pods' bridge (iptables mode). */
  readonly podInterface: string;
  /** Name of the bpffs pin directory /sys/fs/bpf/weft/<pinName>; unique per node on a host. */
  readonly pinName: string;
  /** Template for a pod's cgroup path with {namespace}, {name}; where eBPF capture attaches. */
  readonly podCgroup: string;
  readonly ports: AgentPorts;
  readonly excludePorts: readonly number[];
  readonly excludeCidrs: readonly string[];
  /** Where config comes from: the control plane, or a local manifests directory (standalone). */
  readonly source: { readonly kind: 'control'; readonly address: string; readonly tokenFile: string | undefined; readonly caFile: string | undefined } | { readonly kind: 'manifests'; readonly dir: string };
  readonly trustDomain: string;
  /** Keep capture in place on shutdown, so traffic cannot bypass the mesh while the agent restarts. */
  readonly failClosed: boolean;
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
}

export interface AgentFlags {
  readonly [flag: string]: string | boolean | undefined;
}

function bad(flag: string, value: unknown, why: string): never {
  throw new WeftError(CONFIG_ERROR, `--${flag} ${JSON.stringify(value)}: ${why}`);
}

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function str(flags: AgentFlags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

function ip(flags: AgentFlags, name: string, fallback?: string): string {
  const v = str(flags, name) ?? fallback;
  if (v === undefined) bad(name, v, 'is required');
  if (!isIPv4(v)) bad(name, v, 'must be an IPv4 address');
  return v;
}

function int(flags: AgentFlags, name: string, fallback: number, min: number, max: number): number {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) bad(name, v, `must be a whole number from ${min} to ${max}`);
  return Number(v);
}

function onOff(flags: AgentFlags, name: string, fallback: boolean): boolean {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  if (v !== 'on' && v !== 'off') bad(name, v, 'must be on or off');
  return v === 'on';
}

function list(flags: AgentFlags, name: string): string[] {
  const v = str(flags, name);
  return v === undefined || v === '' ? [] : v.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/** Default proxy workers: like ztunnel's max(2, cores/4), bounded by the cores there are. */
export function defaultWorkers(cores: number): number {
  return Math.max(1, Math.min(cores, Math.max(2, Math.floor(cores / 4))));
}

export function agentConfig(flags: AgentFlags, env: NodeJS.ProcessEnv, cores: number): AgentConfig {
  const node = str(flags, 'node') ?? env.NODE_NAME;
  if (node === undefined || !NODE_NAME.test(node)) bad('node', node, 'is required: a Kubernetes node name (or set NODE_NAME)');
  const mode = str(flags, 'mode') ?? 'ebpf';
  if (mode !== 'ebpf' && mode !== 'iptables' && mode !== 'off') bad('mode', mode, 'must be ebpf, iptables or off');
  const captureAddress = ip(flags, 'capture-address', mode === 'off' ? '127.0.0.1' : undefined);
  const control = str(flags, 'control');
  const manifests = str(flags, 'manifests');
  if ((control === undefined) === (manifests === undefined)) bad('control', control, 'give exactly one of --control HOST:PORT or --manifests DIR');
  if (control !== undefined && !/^[^:]+:\d{1,5}$/.test(control)) bad('control', control, 'must be HOST:PORT');
  const excludePorts = list(flags, 'exclude-ports').map((p) => {
    if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) bad('exclude-ports', p, 'must list ports 1-65535');
    return Number(p);
  });
  const podCgroup = str(flags, 'pod-cgroup') ?? '';
  if (mode === 'ebpf' && !podCgroup.startsWith('/')) bad('pod-cgroup', podCgroup, 'is required in ebpf mode: an absolute path template with {namespace} and {name}');
  return Object.freeze({
    node,
    mode,
    captureAddress,
    tunnelAddress: ip(flags, 'tunnel-address', '0.0.0.0'),
    podInterface: str(flags, 'pod-interface') ?? 'br0',
    pinName: str(flags, 'pin-name') ?? node,
    podCgroup,
    ports: DEFAULT_PORTS,
    excludePorts: Object.freeze(excludePorts),
    excludeCidrs: Object.freeze(list(flags, 'exclude-cidrs')),
    source: control !== undefined
      ? Object.freeze({ kind: 'control' as const, address: control, tokenFile: str(flags, 'token-file'), caFile: str(flags, 'ca-file') })
      : Object.freeze({ kind: 'manifests' as const, dir: manifests ?? '' }),
    trustDomain: str(flags, 'trust-domain') ?? 'cluster.local',
    failClosed: flags['fail-closed'] === true,
    workers: int(flags, 'workers', defaultWorkers(cores), 1, 64),
    drainMs: int(flags, 'drain-seconds', 5, 0, 3600) * 1000,
    readyFile: str(flags, 'ready-file'),
    stateDir: str(flags, 'state-dir') ?? `/run/weft/agent/${node}`,
    logLevel: str(flags, 'log-level') ?? 'info',
    l7: onOff(flags, 'l7', true),
    sniffMs: int(flags, 'sniff-ms', 100, 1, 100),
  });
}

/** The pod's cgroup path from the template. */
export function podCgroupPath(template: string, namespace: string, name: string): string {
  return template.replaceAll('{namespace}', namespace).replaceAll('{name}', name);
}
