// Where a captured connection was going: getsockopt(SOL_IP, SO_ORIGINAL_DST) on the
// accepted socket. Conntrack answers it in iptables mode, the cgroup/getsockopt program in
// eBPF mode; the caller cannot tell which, which is the point.

import type { Socket } from 'node:net';
import { socketFdOf } from '../core/native-addon.ts';
import { redirectError, RedirectErrors } from './errors.ts';
import { isErrnoError, native } from './native.ts';

export { NATIVE_ADDON_PATH, nativeAddonProblem } from './native.ts';

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
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
    if (isErrnoError(err)) {
      // ENOENT: no record (the connection was not captured, or its record aged out).
      throw redirectError(RedirectErrors.NO_ORIGINAL_DST, `no original destination for ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}: ${err.message}`, err);
    }
    throw err;
  }
}
