// CPU time and resident memory of process trees, read from /proc. A proxy may fork helpers
// or run threads; /proc/<pid>/stat counts all threads of a process, and the tree walk adds
// its children, so "the proxy" is the whole tree under each root PID.

import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/** Clock ticks per second for utime/stime (sysconf(_SC_CLK_TCK)); read once at setup. */
export function clockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** `root` and every live descendant. */
export function processTree(root: number): number[] {
  const out: number[] = [];
  const walk = (pid: number, depth: number): void => {
    out.push(pid);
    if (depth > 16) return;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    for (const tid of tasks) {
      let children: string;
      try {
        children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const c of children.split(' ')) if (c.trim() !== '') walk(Number(c), depth + 1);
    }
  };
  walk(root, 0);
  return out;
}

function treeOf(roots: readonly number[]): number[] {
  return [...new Set(roots.flatMap(processTree))];
}

/** utime+stime of one process in ticks (0 when it is gone). Fields 14 and 15 of stat, counted after the `)` of comm. */
function ticks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime is field 14 -> index 11, stime field 15 -> index 12.
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) used so far by the trees under `roots`. */
export function cpuSeconds(roots: readonly number[], hz: number): number {
  return treeOf(roots).reduce((sum, pid) => sum + ticks(pid), 0) / hz;
}

/** Resident set size in bytes of the trees under `roots` (VmRSS summed). */
export function rssBytes(roots: readonly number[]): number {
  let total = 0;
  for (const pid of treeOf(roots)) {
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m !== null) total += Number(m[1]) * 1024;
    } catch {
      // gone
    }
  }
  return total;
}

/** Samples the largest RSS of `roots` every `everyMs` until stopped. */
export function rssPeak(roots: readonly number[], everyMs = 100): { stop(): number } {
  let peak = rssBytes(roots);
  const timer = setInterval(() => { peak = Math.max(peak, rssBytes(roots)); }, everyMs);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, rssBytes(roots));
    },
  };
}
