// Which capture the agent runs. `--mode auto` probes eBPF (every check the object needs, see
// redirect/probe.ts) and falls back to iptables when a named feature is missing, or when the
// kernel refuses to load or attach the programs; the choice is said in one log line and
// exported as weft_capture_mode{mode}. An explicit --mode ebpf never falls back: it fails
// with the missing feature named.

import { Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { describeError, isWeftError } from '../core/errors.ts';
import type { CaptureMode } from '../config/agent.ts';
import { createRedirector, reclaimNode, RedirectErrors, type Redirector, type RedirectorDeps, type RedirectorOptions } from '../redirect/index.ts';
import { checkEbpf, type EbpfReadiness } from '../redirect/probe.ts';
import { Bpftool } from '../redirect/bpftool.ts';
import { DEFAULT_OBJECT } from '../redirect/ebpf-redirector.ts';

export type RunningMode = 'ebpf' | 'iptables' | 'off';

export interface CaptureDecision {
  readonly mode: RunningMode;
  /** Why eBPF was not taken (auto only): the failed checks, named. */
  readonly missing: readonly string[];
}

/** The mode to start, from the requested one and (for auto) the probe. Pure. */
export function decideCapture(requested: CaptureMode, probe: Pick<EbpfReadiness, 'checks'> | undefined): CaptureDecision {
  if (requested !== 'auto') return { mode: requested, missing: [] };
  const missing = (probe?.checks ?? []).filter((c) => !c.ok).map((c) => `${c.what}: ${c.detail ?? 'missing'}`);
  return { mode: probe !== undefined && missing.length === 0 ? 'ebpf' : 'iptables', missing };
}

// The redirector's start failing with one of these under auto means "not on this kernel".
const KERNEL_REFUSALS: ReadonlySet<string> = new Set([
  RedirectErrors.NO_BTF, RedirectErrors.NO_CGROUP2, RedirectErrors.NO_BPFFS, RedirectErrors.NO_BPFTOOL,
  RedirectErrors.KERNEL_UNSUPPORTED, RedirectErrors.NO_OBJECT, RedirectErrors.BPFTOOL_FAILED,
]);

const MODES: readonly RunningMode[] = ['ebpf', 'iptables', 'off'];

export interface StartedCapture {
  readonly redirector: Redirector | undefined;
  readonly mode: RunningMode;
}

/** Starts capture in the requested mode (choosing for auto), sets weft_capture_mode, logs the choice once. */
export async function startCapture(
  requested: CaptureMode, opts: RedirectorOptions, deps: RedirectorDeps & { readonly log: Logger }, registry: Registry,
): Promise<StartedCapture> {
  const gauge = new Gauge({ name: 'weft_capture_mode', help: 'The capture mode this agent runs (1) and the ones it does not (0)', labelNames: ['mode'] as const, registers: [registry] });
  const set = (mode: RunningMode): StartedCapture['mode'] => {
    for (const m of MODES) gauge.set({ mode: m }, m === mode ? 1 : 0);
    return mode;
  };
  const log = deps.log;
  let probeFailure: string | undefined;
  const probe = requested === 'auto'
    ? await checkEbpf({ bpftool: new Bpftool(deps.bpftool), objectPath: deps.objectPath ?? DEFAULT_OBJECT }).catch((err: unknown) => {
      probeFailure = describeError(err);
      log.warn({ err: probeFailure }, 'the eBPF probe itself failed');
      return undefined;
    })
    : undefined;
  let decision = decideCapture(requested, probe);
  // The fallback line names why, also when the probe could not run at all.
  if (probeFailure !== undefined && decision.missing.length === 0) decision = { ...decision, missing: [`the eBPF probe failed: ${probeFailure}`] };
  if (decision.mode === 'off') return { redirector: undefined, mode: set('off') };
  if (decision.mode === 'ebpf') {
    const ebpf = createRedirector('ebpf', opts, deps);
    try {
      await ebpf.start();
      if (requested === 'auto') log.info({ requested, mode: 'ebpf' }, 'capture mode auto: eBPF (every feature it needs is present)');
      return { redirector: ebpf, mode: set('ebpf') };
    } catch (err: unknown) {
      if (requested !== 'auto' || !isWeftError(err) || !KERNEL_REFUSALS.has(err.code)) throw err;
      // Whatever the failed start pinned or attached must not capture beside the iptables rules.
      await ebpf.close({ keepCapture: false }).catch(() => undefined);
      await reclaimNode(opts.node, deps, opts.nodeCgroupRoot).catch((e: unknown) => log.warn({ err: describeError(e) }, 'could not reclaim the failed eBPF capture'));
      decision = { mode: 'iptables', missing: [describeError(err)] };
    }
  }
  const iptables = createRedirector('iptables', opts, deps);
  await iptables.start();
  if (requested === 'auto') {
    log.warn({ requested, mode: 'iptables', missing: decision.missing }, `capture mode auto: iptables, because eBPF capture is not possible here: ${decision.missing.join('; ')}`);
  }
  return { redirector: iptables, mode: set('iptables') };
}
