// The native addon (native/), loaded once: the socket option Node cannot read
// (SO_ORIGINAL_DST) and, for eBPF inbound capture, what must happen inside a pod's network
// namespace or through the bpf() syscall with a process-local file descriptor.

import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { OriginalDestination } from './original-dst.ts';
import { redirectError, RedirectErrors } from './errors.ts';

export interface NativeAddon {
  originalDst(fd: number): OriginalDestination;
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

export const NATIVE_ADDON_PATH = join(import.meta.dirname, '..', '..', 'native', 'build', 'Release', 'weft_native.node');

// Loaded once at import; a missing build is reported when first needed, not at import, so
// code that never reaches the addon still loads.
const addon: NativeAddon | Error = (() => {
  try {
    return createRequire(import.meta.url)(NATIVE_ADDON_PATH) as NativeAddon;
  } catch (err: unknown) {
    return err instanceof Error ? err : new Error(String(err));
  }
})();

/** Why the native addon does not load, or undefined when it does (for `weft check`). */
export function nativeAddonProblem(): string | undefined {
  return addon instanceof Error ? `${NATIVE_ADDON_PATH} does not load (${addon.message}); build it with: npm run bootstrap` : undefined;
}

export function native(): NativeAddon {
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
