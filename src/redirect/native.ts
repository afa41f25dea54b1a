// The native addon (core/native-addon.ts) as capture needs it: the socket option Node cannot
// read (SO_ORIGINAL_DST) and, for eBPF inbound capture, what must happen inside a pod's
// network namespace or through the bpf() syscall with a process-local file descriptor.

import { NATIVE_ADDON_PATH, nativeAddon, type NativeAddon } from '../core/native-addon.ts';
import { redirectError, RedirectErrors } from './errors.ts';

export { NATIVE_ADDON_PATH };

export interface CaptureAddon extends NativeAddon {
  /** Whether `ip` is a local address in the network namespace at `netnsPath`. */
  netnsHolds(netnsPath: string, ip: string): boolean;
  /**
   * A listening socket inside the namespace (bound to its loopback, ephemeral port), added to
   * the pinned SOCKHASH under (podIp, slot); resolves its file descriptor.
   */
  inboundListener(netnsPath: string, podIp: string, sockhashPin: string, slot: number, backlog: number): number;
  /** Links the pinned sk_lookup program to the namespace (which must hold podIp) and pins the link. */
  attachSkLookup(progPin: string, netnsPath: string, podIp: string, linkPin: string): void;
}

/** Why the native addon does not load, or undefined when it does (for `weft check`). */
export function nativeAddonProblem(): string | undefined {
  const addon = nativeAddon();
  return addon instanceof Error ? `${NATIVE_ADDON_PATH} does not load (${addon.message}); build it with: npm run bootstrap` : undefined;
}

export function native(): CaptureAddon {
  const addon = nativeAddon() as CaptureAddon | Error;
  if (addon instanceof Error) {
    throw redirectError(RedirectErrors.NO_NATIVE, `the native addon ${NATIVE_ADDON_PATH} does not load (${addon.message}); build it with: npm run bootstrap`, addon);
  }
  if (typeof addon.inboundListener !== 'function') {
    throw redirectError(RedirectErrors.NO_NATIVE, `the native addon ${NATIVE_ADDON_PATH} is an older build without inbound capture; rebuild it with: npm run bootstrap`);
  }
  return addon;
}

/** An errno-coded Error from the addon (code ENOENT, EADDRNOTAVAIL, ...). */
export function isErrnoError(err: unknown): err is Error & { code: string } {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' && /^E[A-Z0-9]+$/.test(err.code);
}
