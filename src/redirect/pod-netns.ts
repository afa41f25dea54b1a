// Which network namespace is a pod's: the one of a process in its cgroup (or the path the
// caller gave) in which the pod's IPv4 address is a local address. Checking the address is
// what keeps a process that is still entering the pod (it joins the cgroup before the
// namespace) from pointing inbound capture at the node's or the host's namespace.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { redirectError, RedirectErrors } from './errors.ts';
import { native } from './native.ts';
import type { CaptureTarget } from './options.ts';

/** PIDs in a cgroup and its descendants (kubelet puts containers in child cgroups of the pod's), at most `limit`. */
export function cgroupPids(cgroup: string, limit = 64): number[] {
  const out: number[] = [];
  const walk = (dir: string): void => {
    if (out.length >= limit) return;
    try {
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        const pid = Number(line);
        if (Number.isInteger(pid) && pid > 0) out.push(pid);
      }
    } catch {
      // gone meanwhile
    }
    try {
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
    } catch {
      // gone meanwhile
    }
  };
  walk(cgroup);
  return out.slice(0, limit);
}

/** The path of the pod's network namespace; throws BAD_TARGET naming why none was found. */
export function podNetns(pod: CaptureTarget, holds: (netns: string, ip: string) => boolean = (n, ip) => native().netnsHolds(n, ip)): string {
  if (pod.netnsPath !== undefined) {
    if (holds(pod.netnsPath, pod.ip)) return pod.netnsPath;
    throw redirectError(RedirectErrors.BAD_TARGET, `pod ${pod.podId}: its address ${pod.ip} is not in the network namespace ${pod.netnsPath}`);
  }
  const pids = cgroupPids(pod.cgroupPath);
  if (pids.length === 0) {
    throw redirectError(RedirectErrors.BAD_TARGET, `pod ${pod.podId}: no process in its cgroup ${pod.cgroupPath} yet, so its network namespace is unknown (inbound capture waits for one)`);
  }
  const tried = new Set<string>();
  for (const pid of pids) {
    const path = `/proc/${pid}/ns/net`;
    let ino: string;
    try {
      ino = readlinkSync(path); // net:[<inode>]: one check per namespace
    } catch {
      continue; // exited meanwhile
    }
    if (tried.has(ino)) continue;
    tried.add(ino);
    try {
      if (holds(path, pod.ip)) return path;
    } catch {
      // the process exited meanwhile
    }
  }
  throw redirectError(RedirectErrors.BAD_TARGET, `pod ${pod.podId}: none of the ${pids.length} process(es) in ${pod.cgroupPath} is in a network namespace holding ${pod.ip}`);
}
