// Helpers for the simulator tests of capture and inbound enforcement (capture.test.ts,
// dual-stack.test.ts, inbound.test.ts): commands and clients run inside pods without a CLI
// process per call, the agents' access-log records, /config_dump, polling.

import { existsSync, openSync, readFileSync, readSync, closeSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SimStatus } from '../support/sim.ts';
import type { TestContext } from 'node:test';
import { cannotRun } from '../support/root.ts';
import { runInside } from '../../src/sim/processes.ts';

export type Pod = SimStatus['pods'][number];

// ---- running things in pods -------------------------------------------------------------

export interface Ran {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/**
 * Runs a command in a pod the way `weft sim exec` does (same code: its cgroup, then its
 * network namespace), without starting a CLI process for each of the many curls.
 */
export async function inPodFast(pod: Pod, command: readonly string[], timeoutMs = 15_000): Promise<Ran> {
  const started = performance.now();
  const { child, done } = runInside({ cgroup: pod.cgroup, netns: pod.netns }, command, ['ignore', 'pipe', 'pipe']);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => { stdout += b.toString(); });
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const status = await done;
  clearTimeout(timer);
  return { status, stdout, stderr, ms: performance.now() - started };
}

export interface Curl extends Ran {
  readonly body: string;
  /** The client's local port, as curl saw it (0 when it did not connect). */
  readonly localPort: number;
}

export async function curl(pod: Pod, url: string, maxSeconds = 5): Promise<Curl> {
  const r = await inPodFast(pod, ['curl', '-sS', '-m', String(maxSeconds), '-w', '\n%{local_port}', url]);
  const lines = r.stdout.split('\n');
  const localPort = Number(lines.pop());
  return { ...r, body: lines.join('\n'), localPort };
}

export const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---- the agents' access logs --------------------------------------------------------------

export interface Peer {
  readonly workload?: string;
  readonly namespace?: string;
  readonly identity?: string;
  readonly address?: string;
}

export interface ConnectionRecord {
  readonly reporter: 'source' | 'destination';
  readonly src: Peer;
  readonly dst: Peer;
  readonly service?: string;
  readonly security: string;
  readonly bytes_sent: number;
  readonly bytes_received: number;
  readonly flags: string;
}

/** The access-log records an agent wrote after mark(). */
export class AccessLog {
  readonly #file: string;
  #offset = 0;

  constructor(file: string) {
    this.#file = file;
  }

  mark(): void {
    this.#offset = existsSync(this.#file) ? statSync(this.#file).size : 0;
  }

  records(): ConnectionRecord[] {
    const size = statSync(this.#file).size;
    if (size <= this.#offset) return [];
    const buf = Buffer.alloc(size - this.#offset);
    const fd = openSync(this.#file, 'r');
    try {
      readSync(fd, buf, 0, buf.length, this.#offset);
    } finally {
      closeSync(fd);
    }
    const out: ConnectionRecord[] = [];
    for (const line of buf.toString().split('\n')) {
      // One line per connection, or per request for HTTP (then the connection's own line is debug-level).
      if (!line.includes('"msg":"connection"') && !line.includes('"msg":"request"')) continue;
      try {
        out.push(JSON.parse(line) as ConnectionRecord);
      } catch {
        // a line still being written
      }
    }
    return out;
  }

  /** Waits until `count` records are there, then a little longer so that extra ones (a loop) show too. */
  async settle(count: number, timeoutMs = 5000): Promise<ConnectionRecord[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.records().length < count && Date.now() < deadline) await sleep(50);
    await sleep(count === 0 ? 800 : 400);
    return this.records();
  }

  text(): string {
    return readFileSync(this.#file, 'utf8');
  }

  /** What the agent logged since mark(). */
  textSinceMark(): string {
    return readFileSync(this.#file).subarray(this.#offset).toString();
  }
}


export interface ConfigDump {
  readonly capture: { mode: string; enrolled: string[]; refused?: { pod: string; reason: string }[] };
  readonly [field: string]: unknown;
}

export async function configDump(netns: string): Promise<ConfigDump> {
  const r = spawnSync('nsenter', [`--net=/run/netns/${netns}`, 'curl', '-sS', '-m', '5', 'http://127.0.0.1:15000/config_dump'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`config_dump in ${netns}: ${r.stderr}`);
  return Promise.resolve(JSON.parse(r.stdout) as ConfigDump);
}

export async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}


/** A long-running process in a pod (a server, a client holding connections), stopped by its PID. */
export interface InPod {
  readonly pid: number;
  /** Lines it printed on stdout so far. */
  readonly lines: string[];
  /** Resolves once a stdout line matches. */
  waitLine(match: RegExp, timeoutMs: number): Promise<string>;
  stop(): Promise<void>;
}

export function startInPod(pod: Pod, command: readonly string[]): InPod {
  const { child, done } = runInside({ cgroup: pod.cgroup, netns: pod.netns }, command, ['pipe', 'pipe', 'pipe']);
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  child.stdout?.on('data', (b: Buffer) => {
    partial += b.toString();
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
  let exited = false;
  void done.then(() => { exited = true; });
  return {
    pid: child.pid ?? -1,
    lines,
    async waitLine(match, timeoutMs) {
      return until(`a line matching ${String(match)} from ${command.join(' ').slice(0, 80)}`, timeoutMs, () => {
        const hit = lines.find((l) => match.test(l));
        if (hit === undefined && exited) throw new Error(`${command[0] ?? ''} in ${pod.name} exited: ${stderr.slice(-1500)}`);
        return hit;
      });
    },
    async stop() {
      if (!exited && child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      await done;
    },
  };
}

/** A python3 that can import grpc (Debian's python3-grpcio), or undefined. A pyenv python3 may shadow Debian's. */
export function grpcPython(): string | undefined {
  return ['python3', '/usr/bin/python3'].find((py) => spawnSync(py, ['-c', 'import grpc']).status === 0);
}

/** A Python with grpcio, or undefined once the test is marked as unable to run (a failure under CI=true). */
export function needsGrpcPython(t: TestContext): string | undefined {
  const python = grpcPython();
  if (python === undefined) cannotRun(t, 'needs python3-grpcio (scripts/bootstrap.sh installs it)');
  return python;
}


