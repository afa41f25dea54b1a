// The native addon (native/weft_native.c), loaded once and typed: what Node cannot do by
// itself (SO_ORIGINAL_DST, SO_LINGER, RLIMIT_NOFILE, malloc_trim, the kernel splice's maps).
// A missing build is reported when first needed, not at import, so code that never needs it
// still loads.

import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Socket } from 'node:net';

export interface NativeAddon {
  originalDst(fd: number): { readonly address: string; readonly port: number };
  /** seconds >= 0: linger that long on close (0: close resets); -1: off. */
  setLinger(fd: number, seconds: number): void;
  /** RLIMIT_NOFILE; -1 stands for unlimited. */
  nofileLimit(): { readonly soft: number; readonly hard: number };
  /** Sets the soft RLIMIT_NOFILE to the hard one; the limits after. */
  raiseNofileLimit(): { readonly soft: number; readonly hard: number };
  /** glibc malloc_trim(0); true when memory went back to the kernel. */
  mallocTrim(): boolean;
  /** BPF_OBJ_GET: a descriptor of a pinned map. */
  bpfObjGet(path: string): number;
  closeFd(fd: number): void;
  /** Puts two connected sockets into the kernel splice's maps; their socket cookies. */
  kernelSplicePair(socksFd: number, pairsFd: number, fdA: number, fdB: number): [bigint, bigint];
  /** Bytes the kernel moved out of the socket with that cookie; -1 once its entry is gone. */
  kernelSpliceBytes(pairsFd: number, cookie: bigint): number;
  /** The kernel keeps that socket's bytes for JavaScript (its peer was not in the map when some came). */
  kernelSplicePassing(pairsFd: number, cookie: bigint): boolean;
  kernelSpliceForget(pairsFd: number, cookie: bigint): void;
  /** Bytes a TCP socket has taken into its send queue since it connected (plus SYN/FIN). */
  tcpQueuedTotal(fd: number): number;
  /** Moves what one socket's receive queue holds into another's send queue; [bytes, queue emptied]. */
  drainInto(fromFd: number, toFd: number): [number, boolean];
  /** One epoll set on this thread's loop; `onEvent` gets (id, side, epoll event bits) per ready socket. */
  kernelWatchOpen(onEvent: (id: number, side: number, events: number) => void): KernelWatchHandle;
  /** Duplicates two descriptors (closing them resets, SO_LINGER 0) and watches them; the duplicates. */
  kernelWatchAdd(watch: KernelWatchHandle, id: number, fdA: number, fdB: number): [number, number];
  /** shutdown(SHUT_WR); 0 or the errno. */
  kernelWatchShutdown(fd: number): number;
  /** Stops watching `fd` and closes it: an RST when `reset`, else a normal close. */
  kernelWatchClose(watch: KernelWatchHandle, fd: number, reset: boolean): void;
  /** No more events; watched descriptors stay open. Safe twice. */
  kernelWatchStop(watch: KernelWatchHandle): void;
}

/** An open kernel watch (native/kernel_watch.c); opaque. */
export type KernelWatchHandle = { readonly __kernelWatch: never };

export const NATIVE_ADDON_PATH = join(import.meta.dirname, '..', '..', 'native', 'build', 'Release', 'weft_native.node');

const loaded: NativeAddon | Error = (() => {
  try {
    return createRequire(import.meta.url)(NATIVE_ADDON_PATH) as NativeAddon;
  } catch (err: unknown) {
    return err instanceof Error ? err : new Error(String(err));
  }
})();

/** The addon, or the Error that loading it raised. */
export function nativeAddon(): NativeAddon | Error {
  return loaded;
}

/** The file descriptor under a connected net.Socket (Linux, libuv TCP handle), or undefined. */
export function socketFdOf(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}
