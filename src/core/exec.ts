// Runs an external command (ip, iptables, bpftool, ...) and returns its stdout. A failure
// becomes a WeftError with the given code that quotes the command and its stderr.

import { spawn } from 'node:child_process';
import { WeftError } from './errors.ts';

export interface RunOptions {
  /** Text written to the command's stdin. */
  readonly input?: string;
  /** Error code for a failure. */
  readonly code?: string;
  /** Exit statuses that count as success (default [0]). */
  readonly okStatus?: readonly number[];
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly status: number;
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      reject(new WeftError(opts.code ?? 'WEFT_EXEC_FAILED', `cannot run ${cmd}: ${e.message}`, { cause: e }));
    });
    child.on('close', (status, signal) => {
      const result = { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), status: status ?? -1 };
      if ((opts.okStatus ?? [0]).includes(result.status)) {
        resolve(result);
        return;
      }
      const shown = [cmd, ...args].join(' ');
      const why = signal !== null ? `killed by ${signal}` : `exit ${status}`;
      reject(new WeftError(opts.code ?? 'WEFT_EXEC_FAILED', `'${shown.length > 300 ? `${shown.slice(0, 300)}...` : shown}' failed (${why}): ${result.stderr.trim() || result.stdout.trim()}`));
    });
    child.stdin.on('error', () => { /* the command may exit before reading its input */ });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first error after all settle. */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (e: unknown) {
        errors.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length > 0) throw errors[0];
}
