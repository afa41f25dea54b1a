// Where a captured connection was going: getsockopt(SOL_IP, SO_ORIGINAL_DST) on the
// accepted socket. Conntrack answers it in iptables mode, the cgroup/getsockopt program in
// eBPF mode; the caller cannot tell which, which is the point.

import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { redirectError, RedirectErrors } from './errors.ts';

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
}

interface NativeAddon {
  originalDst(fd: number): OriginalDestination;
}

export const NATIVE_ADDON_PATH = join(import.meta.dirname, '..', '..', 'native', 'build', 'Release', 'weft_native.node');

// Loaded once at import; a missing build is reported when first needed, not at import,
// so code that never reads original destinations still loads.
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

function native(): NativeAddon {
  if (addon instanceof Error) {
    throw redirectError(RedirectErrors.NO_NATIVE, `the native addon ${NATIVE_ADDON_PATH} does not load (${addon.message}); build it with: npm run bootstrap`, addon);
  }
  return addon;
}

/** The file descriptor under a connected net.Socket (Linux, libuv TCP handle). */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw redirectError(RedirectErrors.NO_ORIGINAL_DST, 'the socket has no file descriptor (closed, not TCP, or not on Linux)');
  }
  return fd;
}

/** The original destination of a connection accepted on the capture port. */
export function originalDestination(socket: Socket): OriginalDestination {
  const fd = socketFd(socket);
  try {
    return native().originalDst(fd);
  } catch (err: unknown) {
    if (err instanceof Error && 'code' in err && typeof err.code === 'string' && /^E[A-Z0-9]+$/.test(err.code)) {
      // ENOENT: no record (the connection was not captured, or its record aged out).
      throw redirectError(RedirectErrors.NO_ORIGINAL_DST, `no original destination for ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}: ${err.message}`, err);
    }
    throw err;
  }
}
