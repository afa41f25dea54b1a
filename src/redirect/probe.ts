// Can this host do eBPF capture? Each check names exactly what is missing, so an operator
// can fix the host or switch to --mode iptables knowingly (or let --mode auto do it). What
// the kernel must support is read from the BPF object itself (bpf-object.ts), so programs
// added to bpf/ are covered.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { findCgroup2Mount as findCgroup2MountIn } from '../core/cgroup2.ts';
import { run } from '../core/exec.ts';
import { bpfProgramSections, type BpfProgramSection } from './bpf-object.ts';
import type { Bpftool } from './bpftool.ts';
import { redirectError, RedirectErrors, USE_IPTABLES_HINT, type RedirectErrorCode } from './errors.ts';
import { kernelFeatureChecks, mapTypesFromBtf, parseBpfIds, type BpfIds, type FeatureCheck } from './kernel-features.ts';

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

export interface ProbeDeps {
  readonly bpftool: Bpftool;
  /** The compiled object whose programs and maps are checked. */
  readonly objectPath: string;
  /** The kernel's helper and map-type numbers (default: bpf-ids.txt beside the object). */
  readonly idsPath?: string;
  readonly btfPath?: string;
  readonly readMountinfo?: () => string;
  /** Mount bpffs when it is missing (the agent does; `weft check` only reports). Default true. */
  readonly mountBpffs?: boolean;
}

/** One probe step: a FeatureCheck plus the error code that a failure stands for. */
export interface ProbeCheck extends FeatureCheck {
  readonly code?: RedirectErrorCode;
}

export interface EbpfReadiness {
  readonly checks: readonly ProbeCheck[];
  /** The cgroup2 mount point, when found. */
  readonly cgroup2: string | undefined;
  readonly ok: boolean;
}

const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Every check eBPF capture depends on, in order: BTF, cgroup v2, bpftool, bpffs, the object
 * and, for each of its programs and map types, the kernel's support (program type, every
 * helper the program calls, map type). A step that others need stops the rest.
 */
export async function checkEbpf(deps: ProbeDeps): Promise<EbpfReadiness> {
  const checks: ProbeCheck[] = [];
  const add = (c: ProbeCheck): boolean => {
    checks.push(c);
    return c.ok;
  };
  const done = (cgroup2: string | undefined): EbpfReadiness => ({ checks, cgroup2, ok: checks.every((c) => c.ok) });
  const readMountinfo = deps.readMountinfo ?? (() => readFileSync('/proc/self/mountinfo', 'utf8'));
  const btf = deps.btfPath ?? BTF_PATH;
  add(existsSync(btf)
    ? { id: 'btf', what: 'kernel BTF', ok: true, detail: btf }
    : { id: 'btf', what: 'kernel BTF', ok: false, code: RedirectErrors.NO_BTF, detail: `the kernel exposes no BTF at ${btf} (needs CONFIG_DEBUG_INFO_BTF=y), so weft's CO-RE BPF object cannot be relocated` });
  const cgroup2 = findCgroup2MountIn(readMountinfo());
  add(cgroup2 !== undefined
    ? { id: 'cgroup2', what: 'cgroup v2', ok: true, detail: `mounted at ${cgroup2}` }
    : { id: 'cgroup2', what: 'cgroup v2', ok: false, code: RedirectErrors.NO_CGROUP2, detail: 'no cgroup v2 hierarchy is mounted (no fstype cgroup2 in /proc/self/mountinfo); cgroup eBPF hooks need one' });
  let version: unknown;
  try {
    version = await deps.bpftool.json(['version']);
  } catch (err: unknown) {
    add({ id: 'bpftool', what: 'bpftool', ok: false, code: RedirectErrors.NO_BPFTOOL, detail: `bpftool is not usable (${describe(err)}); install it (Debian: apt-get install bpftool)` });
    return done(cgroup2);
  }
  const v = (version ?? {}) as { version?: unknown; libbpf_version?: unknown };
  add({ id: 'bpftool', what: 'bpftool', ok: true, detail: `bpftool ${typeof v.version === 'string' ? v.version : '(unknown version)'}${typeof v.libbpf_version === 'string' ? `, libbpf ${v.libbpf_version}` : ''}` });
  if (bpffsMountedAt(readMountinfo(), BPFFS_PATH)) {
    add({ id: 'bpffs', what: 'bpffs', ok: true, detail: `mounted at ${BPFFS_PATH}` });
  } else if (deps.mountBpffs === false) {
    add({ id: 'bpffs', what: 'bpffs', ok: true, detail: `not mounted at ${BPFFS_PATH}; the agent mounts it when it starts` });
  } else {
    try {
      await run('mount', ['-t', 'bpf', 'bpf', BPFFS_PATH]);
      add({ id: 'bpffs', what: 'bpffs', ok: true, detail: `mounted at ${BPFFS_PATH} (just now)` });
    } catch (err: unknown) {
      // Someone else may have mounted it meanwhile.
      add(bpffsMountedAt(readMountinfo(), BPFFS_PATH)
        ? { id: 'bpffs', what: 'bpffs', ok: true, detail: `mounted at ${BPFFS_PATH}` }
        : { id: 'bpffs', what: 'bpffs', ok: false, code: RedirectErrors.NO_BPFFS, detail: `bpffs is not mounted at ${BPFFS_PATH} and mounting it failed (${describe(err)}); mount it with: mount -t bpf bpf ${BPFFS_PATH}` });
    }
  }
  let programs: BpfProgramSection[];
  try {
    programs = bpfProgramSections(readFileSync(deps.objectPath));
  } catch (err: unknown) {
    add({ id: 'object', what: 'BPF object', ok: false, code: RedirectErrors.NO_OBJECT, detail: `cannot read the BPF object ${deps.objectPath} (${describe(err)}); build it with: make -C bpf` });
    return done(cgroup2);
  }
  add({ id: 'object', what: 'BPF object', ok: true, detail: `${deps.objectPath}: ${programs.map((p) => p.section).join(', ')}` });
  let ids: BpfIds;
  const idsPath = deps.idsPath ?? join(dirname(deps.objectPath), 'bpf-ids.txt');
  try {
    ids = parseBpfIds(readFileSync(idsPath, 'utf8'));
  } catch {
    ids = { helpers: new Map(), mapTypes: new Map() }; // helpers are then named by number
  }
  const [probe, btfDump] = await Promise.all([
    deps.bpftool.json(['feature', 'probe', 'kernel']),
    deps.bpftool.json(['btf', 'dump', 'file', deps.objectPath]),
  ]);
  for (const c of kernelFeatureChecks(probe, programs, mapTypesFromBtf(btfDump), ids)) add(c.ok ? c : { ...c, code: RedirectErrors.KERNEL_UNSUPPORTED });
  return done(cgroup2);
}

/**
 * For the eBPF redirector's start: every check must pass, else the first failure is thrown
 * (all missing kernel features named at once). Resolves the cgroup2 mount point.
 */
export async function probeEbpf(deps: ProbeDeps): Promise<{ cgroup2: string }> {
  const r = await checkEbpf(deps);
  const failed = r.checks.filter((c) => !c.ok);
  const first = failed[0];
  if (first === undefined && r.cgroup2 !== undefined) return { cgroup2: r.cgroup2 };
  const kernel = failed.filter((c) => c.code === RedirectErrors.KERNEL_UNSUPPORTED);
  if (first?.code === RedirectErrors.KERNEL_UNSUPPORTED) {
    throw redirectError(RedirectErrors.KERNEL_UNSUPPORTED, `this kernel lacks what the capture programs need: ${kernel.map((c) => c.detail ?? c.what).join('; ')}; ${USE_IPTABLES_HINT}`);
  }
  throw redirectError(first?.code ?? RedirectErrors.NO_CGROUP2, `${first?.detail ?? 'no cgroup v2 hierarchy'}; ${USE_IPTABLES_HINT}`);
}
