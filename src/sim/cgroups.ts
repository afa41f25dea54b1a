// The cluster's cgroup v2 directories: <cgroup2>/weft-<cluster>/<node>/pod-<ns>.<pod>.
// A pod's processes live in its directory, so cgroup eBPF hooks apply to them exactly as
// they would to a real pod's.

import { mkdirSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../core/errors.ts';
import { findCgroup2Mount } from '../core/cgroup2.ts';
import { SimErrors } from './errors.ts';

export function cgroup2Root(): string {
  const mount = findCgroup2Mount();
  if (mount === undefined) {
    throw new WeftError(SimErrors.NO_CGROUP2, 'no cgroup v2 hierarchy is mounted (looked for fstype cgroup2 in /proc/self/mountinfo); mount one with: mount -t cgroup2 none /sys/fs/cgroup/unified');
  }
  return mount;
}

export function makeCgroup(path: string): void {
  mkdirSync(path, { recursive: true });
}

export function moveToCgroup(path: string, pid: number): void {
  writeFileSync(join(path, 'cgroup.procs'), `${pid}\n`);
}

/** PIDs in `path` and every cgroup below it. */
export function cgroupPids(path: string): number[] {
  const pids: number[] = [];
  const walk = (dir: string): void => {
    try {
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        if (line !== '') pids.push(Number(line));
      }
      for (const entry of readdirSync(dir)) {
        const sub = join(dir, entry);
        if (statSync(sub).isDirectory()) walk(sub);
      }
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  };
  walk(path);
  return pids;
}

/**
 * Removes `path` and its sub-cgroups, deepest first. They must hold no live processes; a
 * cgroup whose last tasks are still exiting answers EBUSY for a moment, so that is retried.
 */
export async function removeCgroupTree(path: string, patienceMs = 5000): Promise<void> {
  let entries: string[];
  try {
    entries = readdirSync(path);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const entry of entries) {
    const sub = join(path, entry);
    if (statSync(sub).isDirectory()) await removeCgroupTree(sub, patienceMs);
  }
  const deadline = Date.now() + patienceMs;
  for (;;) {
    try {
      rmdirSync(path);
      return;
    } catch (err: unknown) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) throw err;
      await sleep(20);
    }
  }
}

/** Top-level cgroup directories named with `prefix`. */
export function listCgroups(root: string, prefix: string): string[] {
  return readdirSync(root).filter((e) => e.startsWith(prefix)).map((e) => join(root, e));
}
