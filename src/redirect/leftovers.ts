// Removing what an earlier agent for this node left, per mode. Each mode's start() clears
// the other mode's leftovers, so switching --mode after a crash cannot leave pods captured
// twice or captured towards nothing.

import { existsSync } from 'node:fs';
import { run } from '../core/exec.ts';
import { Bpftool } from './bpftool.ts';
import { pinLayout, reclaimPins } from './ebpf-pins.ts';
import { removeNatChains } from './iptables-nat.ts';
import { findCgroup2Mount } from './probe.ts';
import type { RedirectLog, RedirectorDeps } from './redirector.ts';

async function commandExists(cmd: string): Promise<boolean> {
  try {
    await run('sh', ['-c', 'command -v "$1"', 'sh', cmd]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Detaches and unpins the node's eBPF capture, and weft programs nobody has pinned, under
 * `cgroupRoot` (the node's cgroup tree; default the whole cgroup2 mount).
 */
export async function reclaimEbpf(node: string, deps: RedirectorDeps, log: RedirectLog, cgroupRoot?: string): Promise<void> {
  // Without bpftool nothing of ours can have been loaded through it; without cgroup2, attached.
  if (!(await commandExists(deps.bpftool ?? 'bpftool'))) return;
  let cgroup2: string;
  try {
    cgroup2 = findCgroup2Mount();
  } catch {
    return;
  }
  const pinned = existsSync(pinLayout(node).dir);
  const { detached } = await reclaimPins(new Bpftool(deps.bpftool), cgroupRoot ?? cgroup2, node);
  if (detached > 0 || pinned) log.warn({ node, detached }, 'removed leftover eBPF capture');
}

/** Removes WEFT-* chains from this network namespace's nat table. */
export async function reclaimIptables(deps: RedirectorDeps, log: RedirectLog): Promise<void> {
  const save = deps.iptablesSave ?? 'iptables-save';
  if (!(await commandExists(save))) return;
  if (await removeNatChains({ save, restore: deps.iptablesRestore ?? 'iptables-restore' })) log.warn({}, 'removed leftover WEFT chains');
}
