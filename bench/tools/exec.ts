// Runs a benchmark tool inside a pod or node (its cgroup, then its network namespace),
// captures its output, and kills it by PID if it outlives its time limit. Every load in the
// harness goes through here, so none can run unbounded.

import type { Readable } from 'node:stream';
import { runInside, type Placement } from '../../src/sim/processes.ts';

export interface ToolResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

export interface ToolRun {
  /** PID of the tool itself (the entry script execs it, so the PID stays the same). */
  readonly pid: number | undefined;
  readonly done: Promise<ToolResult>;
  /** The tool's stdout as it arrives (it is also collected into the result). */
  readonly stdout: Readable | null;
  /** Closes the tool's stdin (tools that hold something until stdin ends use this). */
  endInput(): void;
  kill(): void;
}

/** Starts `command` in `where`; it is SIGKILLed after `timeoutMs`. */
export function startTool(where: Placement, command: readonly string[], timeoutMs: number): ToolRun {
  const { child, done } = runInside(where, command, ['pipe', 'pipe', 'pipe']);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (b: Buffer) => out.push(b));
  child.stderr?.on('data', (b: Buffer) => err.push(b));
  child.stdin?.on('error', () => { /* the tool may exit before reading stdin */ });
  let timedOut = false;
  const kill = (): void => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, timeoutMs);
  timer.unref();
  return {
    pid: child.pid,
    stdout: child.stdout,
    done: done.then((status) => {
      clearTimeout(timer);
      return { status, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), timedOut };
    }),
    endInput: () => { child.stdin?.end(); },
    kill,
  };
}

/** Runs `command` in `where` to completion (or its time limit). */
export function runTool(where: Placement, command: readonly string[], timeoutMs: number): Promise<ToolResult> {
  const run = startTool(where, command, timeoutMs);
  run.endInput();
  return run.done;
}

/** A one-line reason a tool run failed, for error messages. */
export function failure(what: string, r: ToolResult): string {
  const tail = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join(' | ');
  return `${what} ${r.timedOut ? 'timed out' : `exited ${r.status}`}${tail === '' ? '' : `: ${tail}`}`;
}
