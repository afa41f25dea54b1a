// Transparent capture: the public surface the agent wiring (src/app) uses.

import { join } from 'node:path';
import { EbpfRedirector } from './ebpf-redirector.ts';
import { KERNEL_SPLICE_PIN_BASE } from './kernel-splice.ts';
import { redirectError, RedirectErrors } from './errors.ts';
import { IptablesRedirector } from './iptables-redirector.ts';
import { reclaimEbpf, reclaimIptables } from './leftovers.ts';
import { validateNode, validateOptions, type RedirectorOptions } from './options.ts';
import { removePinDir } from './pin-dirs.ts';
import type { RedirectMode, Redirector, RedirectorDeps } from './redirector.ts';
import { silentLog } from './redirector.ts';

export type { CaptureTarget, RedirectorOptions } from './options.ts';
export { AGENT_PORTS, DNS_PORT } from './options.ts';
export type { CloseOptions, RedirectLog, RedirectMode, Redirector, RedirectorDeps } from './redirector.ts';
export { RedirectErrors, type RedirectErrorCode } from './errors.ts';
export { originalDestination, type OriginalDestination } from './original-dst.ts';
export { findCgroup2Mount } from './probe.ts';
export { PIN_BASE } from './ebpf-pins.ts';
export { removePinDir } from './pin-dirs.ts';
export { KERNEL_SPLICE_PIN_BASE, KernelSpliceProgram, checkKernelSplice, type KernelSpliceDeps, type KernelSplicePins } from './kernel-splice.ts';

/** Validates the options (throws WEFT_REDIRECT_BAD_OPTION naming the field) and builds the mode's redirector. */
export function createRedirector(mode: RedirectMode, opts: RedirectorOptions, deps: RedirectorDeps = {}): Redirector {
  const cfg = validateOptions(opts);
  switch (mode) {
    case 'ebpf':
      return new EbpfRedirector(cfg, deps);
    case 'iptables':
      return new IptablesRedirector(cfg, deps);
    default:
      throw redirectError(RedirectErrors.BAD_OPTION, `redirect mode ${JSON.stringify(mode)}: must be 'ebpf' or 'iptables'`);
  }
}

/**
 * Removes what a crashed agent for `node` left: its eBPF pins and attachments (plus weft
 * programs nobody has pinned any more), its kernel-splice pins and the WEFT-* chains of the network namespace
 * this process runs in (the agent runs in its node's). Tools that are not installed
 * mean there is nothing of theirs to remove. Attachments are looked for under `cgroupRoot`,
 * the node's cgroup tree (default: the whole cgroup2 mount).
 */
export async function reclaimNode(node: string, deps: RedirectorDeps = {}, cgroupRoot?: string): Promise<void> {
  validateNode(node);
  const log = deps.log ?? silentLog;
  await reclaimEbpf(node, deps, log, cgroupRoot);
  removePinDir(join(KERNEL_SPLICE_PIN_BASE, node));
  await reclaimIptables(deps, log);
}
