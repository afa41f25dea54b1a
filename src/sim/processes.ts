// Starting processes inside a pod or node (its cgroup first, then its network namespace)
// and stopping them by PID. `ip netns exec` is avoided on purpose: it remounts /sys,
// which hides the cgroup mounts from the command.

import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Placement {
  /** Absolute cgroup directory. */
  readonly cgroup: string;
  /** Network namespace name (under /run/netns); '' stays in the caller's (the root) namespace. */
  readonly netns: string;
}

// $0 is the cgroup, $1 the netns; the rest is the command. `exec` keeps one PID throughout.
const ENTER = 'echo $$ > "$0/cgroup.procs" && ns="$1" && shift 1 && if [ -n "$ns" ]; then exec nsenter --net="/run/netns/$ns" -- "$@"; else exec "$@"; fi';

export function enterArgs(where: Placement, command: readonly string[]): string[] {
  return ['-c', ENTER, where.cgroup, where.netns, ...command];
}

/** Starts a long-running process detached from us, output appended to `logFile`. */
export function startDetached(where: Placement, command: readonly string[], env: NodeJS.ProcessEnv, logFile: string): number {
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn('sh', enterArgs(where, command), { detached: true, stdio: ['ignore', fd, fd], env });
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${command.join(' ')}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** Runs a command inside a pod or node, with the given stdio; resolves with its exit code. */
export function runInside(where: Placement, command: readonly string[], stdio: StdioOptions = 'inherit'): { child: ChildProcess; done: Promise<number> } {
  const child = spawn('sh', enterArgs(where, command), { stdio });
  const done = new Promise<number>((resolve) => {
    child.on('error', () => resolve(127));
    child.on('close', (code, signal) => resolve(code ?? (signal !== null ? 128 + 9 : 1)));
  });
  return { child, done };
}

/** True while `pid` names a live (not zombie) process. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after `graceMs` for whatever is still alive. */
export async function stopPids(pids: readonly number[], graceMs = 2000): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  const live = pids.filter(alive);
  for (const pid of live) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (live.some(alive) && Date.now() < deadline) await sleep(20);
  for (const pid of live.filter(alive)) signal(pid, 'SIGKILL');
  const hardDeadline = Date.now() + 2000;
  while (live.some(alive) && Date.now() < hardDeadline) await sleep(20);
}

/** The OpenTelemetry variables (OTEL_*) of `weft sim`'s own environment, passed to every mesh process. */
export function otelEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[0].startsWith('OTEL_') && e[1] !== undefined));
}
