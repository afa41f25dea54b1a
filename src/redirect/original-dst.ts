// Where a captured connection was going: getsockopt(SOL_IP, SO_ORIGINAL_DST) on the
// accepted socket. Conntrack answers it in iptables mode, the cgroup/getsockopt program in
// eBPF mode; the caller cannot tell which, which is the point.

import type { Socket } from 'node:net';
import { NATIVE_ADDON_PATH, nativeAddon, socketFdOf, type NativeAddon } from '../core/native-addon.ts';
import { redirectError, RedirectErrors } from './errors.ts';

export { NATIVE_ADDON_PATH };

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
}

/** Why the native addon does not load, or undefined when it does (for `weft check`). */
export function nativeAddonProblem(): string | undefined {
  const addon = nativeAddon();
  return addon instanceof Error ? `${NATIVE_ADDON_PATH} does not load (${addon.message}); build it with: npm run bootstrap` : undefined;
}

function native(): NativeAddon {
  const addon = nativeAddon();
  if (addon instanceof Error) {
    throw redirectError(RedirectErrors.NO_NATIVE, `the native addon ${NATIVE_ADDON_PATH} does not load (${addon.message}); build it with: npm run bootstrap`, addon);
  }
  return addon;
}

/** The file descriptor under a connected net.Socket (Linux, libuv TCP handle). */
export function socketFd(socket: Socket): number {
  const fd = socketFdOf(socket);
  if (fd === undefined) {
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
