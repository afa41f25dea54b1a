// Can this host do eBPF capture? Each check names exactly what is missing, so an operator
// can fix the host or switch to --mode iptables knowingly.

import { existsSync, readFileSync } from 'node:fs';
import { findCgroup2Mount as findCgroup2MountIn } from '../core/cgroup2.ts';
import { run } from '../core/exec.ts';
import type { Bpftool } from './bpftool.ts';
import { redirectError, RedirectErrors, USE_IPTABLES_HINT } from './errors.ts';

export const BTF_PATH = '/sys/kernel/btf/vmlinux';
export const BPFFS_PATH = '/sys/fs/bpf';

/** The cgroup2 mount point (e.g. /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts). */
export function findCgroup2Mount(mountinfo?: string): string {
  const found = findCgroup2MountIn(mountinfo);
  if (found === undefined) {
    throw redirectError(RedirectErrors.NO_CGROUP2, `no cgroup v2 hierarchy is mounted (no fstype cgroup2 in /proc/self/mountinfo); cgroup eBPF hooks need one; ${USE_IPTABLES_HINT}`);
  }
  return found;
}

/** True when /proc/self/mountinfo shows a bpf filesystem mounted at `at`. */
export function bpffsMountedAt(mountinfo: string, at: string): boolean {
  return mountinfo.split('\n').some((line) => {
    const sep = line.indexOf(' - ');
    return sep >= 0 && line.slice(sep + 3).split(' ')[0] === 'bpf' && line.slice(0, sep).split(' ')[4] === at;
  });
}

// What the capture programs need, as `bpftool feature probe kernel -j` names it.
const NEEDED: readonly (readonly [section: string, key: string, what: string])[] = [
  ['program_types', 'have_cgroup_sock_addr_prog_type', 'BPF program type cgroup_sock_addr (cgroup/connect4, Linux 4.17)'],
  ['program_types', 'have_sock_ops_prog_type', 'BPF program type sock_ops (Linux 4.13)'],
  ['program_types', 'have_cgroup_sockopt_prog_type', 'BPF program type cgroup_sockopt (cgroup/getsockopt, Linux 5.3)'],
  ['map_types', 'have_lru_hash_map_type', 'BPF map type lru_hash (Linux 4.10)'],
  ['map_types', 'have_lpm_trie_map_type', 'BPF map type lpm_trie (Linux 4.11)'],
];

/** The features `bpftool feature probe kernel -j` reports missing, described for people. */
export function missingKernelFeatures(probe: unknown): string[] {
  const missing: string[] = [];
  const root = (typeof probe === 'object' && probe !== null ? probe : {}) as Record<string, Record<string, unknown> | undefined>;
  for (const [section, key, what] of NEEDED) {
    if (root[section]?.[key] !== true) missing.push(what);
  }
  const helpers = root.helpers ?? {};
  for (const progType of ['cgroup_sock_addr', 'sock_ops']) {
    const list = helpers[`${progType}_available_helpers`];
    if (!Array.isArray(list) || !list.includes('bpf_get_socket_cookie')) {
      missing.push(`helper bpf_get_socket_cookie in ${progType} programs (Linux 5.0)`);
    }
  }
  return missing;
}

export interface ProbeDeps {
  readonly bpftool: Bpftool;
  readonly readMountinfo?: () => string;
}

/**
 * Checks BTF, cgroup v2, bpftool, bpffs (mounting it when absent) and the kernel's
 * program and map types. Resolves the cgroup2 mount point.
 */
export async function probeEbpf(deps: ProbeDeps): Promise<{ cgroup2: string }> {
  const readMountinfo = deps.readMountinfo ?? (() => readFileSync('/proc/self/mountinfo', 'utf8'));
  if (!existsSync(BTF_PATH)) {
    throw redirectError(RedirectErrors.NO_BTF, `the kernel exposes no BTF at ${BTF_PATH} (needs CONFIG_DEBUG_INFO_BTF=y), so weft's CO-RE BPF object cannot be relocated; ${USE_IPTABLES_HINT}`);
  }
  const cgroup2 = findCgroup2Mount(readMountinfo());
  try {
    await deps.bpftool.json(['version']);
  } catch (err: unknown) {
    throw redirectError(RedirectErrors.NO_BPFTOOL, `bpftool is not usable (${err instanceof Error ? err.message : String(err)}); install it (Debian: apt-get install bpftool); ${USE_IPTABLES_HINT}`, err);
  }
  if (!bpffsMountedAt(readMountinfo(), BPFFS_PATH)) {
    try {
      await run('mount', ['-t', 'bpf', 'bpf', BPFFS_PATH]);
    } catch (err: unknown) {
      // Someone else may have mounted it meanwhile.
      if (!bpffsMountedAt(readMountinfo(), BPFFS_PATH)) {
        throw redirectError(RedirectErrors.NO_BPFFS, `bpffs is not mounted at ${BPFFS_PATH} and mounting it failed (${err instanceof Error ? err.message : String(err)}); mount it with: mount -t bpf bpf ${BPFFS_PATH}; ${USE_IPTABLES_HINT}`, err);
      }
    }
  }
  const missing = missingKernelFeatures(await deps.bpftool.json(['feature', 'probe', 'kernel']));
  if (missing.length > 0) {
    throw redirectError(RedirectErrors.KERNEL_UNSUPPORTED, `this kernel lacks: ${missing.join('; ')}; ${USE_IPTABLES_HINT}`);
  }
  return { cgroup2 };
}
