// `weft check`, gathered: the kernel's eBPF support for exactly the programs, helpers and map
// types the BPF object uses; iptables (REDIRECT, conntrack, TPROXY, ...) tried in a throwaway
// network namespace; the process's capabilities and native addon; the control plane's TLS
// endpoint; and, when an agent runs on this node, what its admin port says (control
// connection, certificates, capture of every enrolled pod). Which failures are fatal depends
// on the capture mode: under auto, missing eBPF is a warning while iptables works.

import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { hasCapability, effectiveCapabilities } from '../core/capabilities.ts';
import { describeError } from '../core/errors.ts';
import type { CaptureMode } from '../config/agent.ts';
import { probeControlPlane } from '../control/reachability.ts';
import { Bpftool } from '../redirect/bpftool.ts';
import { DEFAULT_OBJECT } from '../redirect/ebpf-redirector.ts';
import { checkIptables } from '../redirect/iptables-features.ts';
import type { FeatureCheck } from '../redirect/kernel-features.ts';
import { nativeAddonProblem } from '../redirect/original-dst.ts';
import { checkKernelSplice, KERNEL_SPLICE_OBJECT } from '../redirect/kernel-splice.ts';
import { checkEbpf } from '../redirect/probe.ts';
import { agentChecks, type Check, type CheckStatus } from './agent-checks.ts';

export type { Check, CheckStatus } from './agent-checks.ts';

export interface HostCheckOptions {
  /** The agent's capture mode: decides whether missing eBPF or iptables fails the check. */
  readonly mode: Exclude<CaptureMode, 'off'>;
  readonly bpftool: string;
  readonly objectPath?: string;
  /** The local agent's admin address (`127.0.0.1:15000`); undefined skips the agent checks. */
  readonly agent: string | undefined;
  readonly control: { readonly address: string; readonly caFile: string; readonly trustDomain: string } | undefined;
  readonly now?: number;
  readonly procSelfStatus?: string;
}

/** The statuses of the eBPF and iptables groups, given the mode (pure). */
export function captureVerdicts(mode: HostCheckOptions['mode'], ebpfOk: boolean, iptablesOk: boolean): { ebpf: CheckStatus; iptables: CheckStatus; note: string | undefined } {
  if (mode === 'ebpf') return { ebpf: 'fail', iptables: 'warn', note: undefined };
  if (mode === 'iptables') return { ebpf: 'warn', iptables: 'fail', note: undefined };
  if (ebpfOk) return { ebpf: 'fail', iptables: 'warn', note: 'no fallback if eBPF ever fails' };
  if (iptablesOk) return { ebpf: 'warn', iptables: 'fail', note: 'the agent (--mode auto) falls back to iptables' };
  return { ebpf: 'fail', iptables: 'fail', note: undefined };
}

const asCheck = (group: string, failStatus: CheckStatus, note?: string) => (c: FeatureCheck): Check => ({
  group, id: c.id, what: c.what, status: c.ok ? 'pass' : failStatus,
  ...(c.detail === undefined && (c.ok || note === undefined) ? {} : { detail: [c.detail, c.ok ? undefined : note].filter((x) => x !== undefined).join('; ') }),
});

async function agentGroup(address: string, now: number): Promise<Check[]> {
  let dump: unknown;
  try {
    const res = await fetch(`http://${address}/config_dump`, { signal: AbortSignal.timeout(5000) });
    if (res.status !== 200) return [{ group: 'agent', id: 'agent', what: `agent at ${address}`, status: 'fail', detail: `/config_dump answered HTTP ${res.status}` }];
    dump = await res.json();
  } catch (err: unknown) {
    return [{ group: 'agent', id: 'agent', what: `agent at ${address}`, status: 'skip', detail: `no agent answers at ${address} (${describeError(err)}); run weft check on a node with a running agent, or give --agent HOST:PORT` }];
  }
  const node = (dump as { node?: unknown }).node;
  return [
    { group: 'agent', id: 'agent', what: `agent at ${address}`, status: 'pass', detail: `node ${typeof node === 'string' ? node : '?'}` },
    ...agentChecks(dump as Parameters<typeof agentChecks>[0], now),
  ];
}

export async function runHostChecks(o: HostCheckOptions): Promise<Check[]> {
  const now = o.now ?? Date.now();
  const [ebpf, iptables, splice] = await Promise.all([
    checkEbpf({ bpftool: new Bpftool(o.bpftool), objectPath: o.objectPath ?? DEFAULT_OBJECT, mountBpffs: false }),
    checkIptables(),
    checkKernelSplice(new Bpftool(o.bpftool), KERNEL_SPLICE_OBJECT, false),
  ]);
  // The kernel splice's own needs (its program and map types, helpers); what capture shares with it is listed once.
  const shared = new Set(ebpf.checks.map((c) => c.id));
  const verdict = captureVerdicts(o.mode, ebpf.ok, iptables.every((c) => c.ok));
  const checks: Check[] = [
    { group: 'ebpf', id: 'kernel', what: 'kernel', status: 'pass', detail: `Linux ${release()}` },
    ...ebpf.checks.map(asCheck('ebpf', verdict.ebpf, verdict.ebpf === 'warn' ? verdict.note : undefined)),
    ...iptables.map(asCheck('iptables', verdict.iptables, verdict.iptables === 'warn' ? verdict.note : undefined)),
    ...splice.filter((c) => c.id === 'object' || !shared.has(c.id))
      .map(asCheck('kernel-splice', 'warn', 'same-node connections are spliced in user space (slower, still correct)')),
  ];

  const caps = effectiveCapabilities(o.procSelfStatus ?? readFileSync('/proc/self/status', 'utf8'));
  const need: ReadonlyArray<readonly [string, string]> = [
    ['CAP_NET_ADMIN', 'attach cgroup programs, write iptables rules'], ['CAP_BPF', 'load BPF programs and maps (Linux 5.8+)'],
    ['CAP_SYS_ADMIN', 'mount bpffs, probe kernel features'],
  ];
  for (const [cap, why] of need) {
    const ok = hasCapability(caps, cap);
    checks.push({ group: 'process', id: `capability:${cap}`, what: cap, status: ok ? 'pass' : 'fail', detail: ok ? why : `missing: needed to ${why}` });
  }
  const native = nativeAddonProblem();
  checks.push({ group: 'process', id: 'native-addon', what: 'native addon (SO_ORIGINAL_DST)', status: native === undefined ? 'pass' : 'fail', ...(native === undefined ? {} : { detail: native }) });

  if (o.control !== undefined) {
    let ca: string | undefined;
    try {
      ca = readFileSync(o.control.caFile, 'utf8');
    } catch (err: unknown) {
      checks.push({ group: 'control', id: 'control-tls', what: 'control plane', status: 'fail', detail: `cannot read --ca-file ${o.control.caFile}: ${describeError(err)}` });
    }
    if (ca !== undefined) {
      const r = await probeControlPlane(o.control.address, ca, o.control.trustDomain);
      checks.push({ group: 'control', id: 'control-tls', what: 'control plane', status: r.ok ? 'pass' : 'fail', detail: r.detail });
    }
  }
  if (o.agent !== undefined) checks.push(...await agentGroup(o.agent, now));
  return checks;
}
