// Error codes of transparent capture. Callers branch on these, never on messages.
// Kernel and tool problems name exactly what is missing and point at `--mode iptables`.
import { WeftError } from '../core/errors.ts';

export const RedirectErrors = {
  /** An option passed to createRedirector is invalid; the message names the field. */
  BAD_OPTION: 'WEFT_REDIRECT_BAD_OPTION',
  /** A CaptureTarget (pod) is invalid: bad IP, cgroup missing, id too long. */
  BAD_TARGET: 'WEFT_REDIRECT_BAD_TARGET',
  /** The pod has IPv6 addresses; capture is IPv4 only, so it is refused rather than half-captured. */
  IPV6_UNSUPPORTED: 'WEFT_REDIRECT_IPV6_UNSUPPORTED',
  /** The kernel exposes no BTF (/sys/kernel/btf/vmlinux), so CO-RE objects cannot load. */
  NO_BTF: 'WEFT_REDIRECT_NO_BTF',
  /** No cgroup v2 hierarchy is mounted. */
  NO_CGROUP2: 'WEFT_REDIRECT_NO_CGROUP2',
  /** bpffs is not mounted at /sys/fs/bpf and mounting it failed. */
  NO_BPFFS: 'WEFT_REDIRECT_NO_BPFFS',
  /** The bpftool command is not installed or does not run. */
  NO_BPFTOOL: 'WEFT_REDIRECT_NO_BPFTOOL',
  /** The kernel lacks a BPF program or map type the capture needs. */
  KERNEL_UNSUPPORTED: 'WEFT_REDIRECT_KERNEL_UNSUPPORTED',
  /** The compiled BPF object is missing (run `make -C bpf`). */
  NO_OBJECT: 'WEFT_REDIRECT_NO_OBJECT',
  /** A bpftool command failed (load, attach, map update, ...). */
  BPFTOOL_FAILED: 'WEFT_REDIRECT_BPFTOOL_FAILED',
  /** The iptables command is not installed or cannot use the nat table here. */
  NO_IPTABLES: 'WEFT_REDIRECT_NO_IPTABLES',
  /** An iptables command failed. */
  IPTABLES_FAILED: 'WEFT_REDIRECT_IPTABLES_FAILED',
  /** The redirector was used after close(), or before start(). */
  NOT_RUNNING: 'WEFT_REDIRECT_NOT_RUNNING',
  /** The native addon (native/build/Release/weft_native.node) is not built or does not load. */
  NO_NATIVE: 'WEFT_REDIRECT_NO_NATIVE',
  /** The same-node kernel splice cannot run here (a kernel feature, bpftool or the object is missing); user-space splice is used. */
  KERNEL_SPLICE_UNAVAILABLE: 'WEFT_REDIRECT_KERNEL_SPLICE_UNAVAILABLE',
  /** The node's neighbour entries could not be pinned in a pod's network namespace (nsenter or ip missing or failing). */
  NEIGHBOUR_PIN_FAILED: 'WEFT_REDIRECT_NEIGHBOUR_PIN_FAILED',
  /** The socket has no original destination (not captured) or is not a usable TCP socket. */
  NO_ORIGINAL_DST: 'WEFT_REDIRECT_NO_ORIGINAL_DST',
} as const;

export type RedirectErrorCode = (typeof RedirectErrors)[keyof typeof RedirectErrors];

export function redirectError(code: RedirectErrorCode, message: string, cause?: unknown): WeftError {
  return new WeftError(code, message, cause === undefined ? undefined : { cause });
}

/** Appended to every "this kernel/host cannot do eBPF capture" message. */
export const USE_IPTABLES_HINT = 'eBPF capture is not possible here: fix that, or run the agent with --mode iptables';
