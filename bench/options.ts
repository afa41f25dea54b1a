// `npm run bench` flags, validated once and frozen. --quick is the smoke variant the test
// suite runs (under a minute); the default is the full run for real numbers.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fdBudget } from '../src/app/fd-budget.ts';

export type PathName = 'direct' | 'haproxy' | 'weft';
export const PATH_NAMES: readonly PathName[] = ['direct', 'haproxy', 'weft'];

export interface BenchOptions {
  readonly quick: boolean;
  /** Repetitions of each (scenario, variant, path); paths interleave within a repetition. */
  readonly reps: number;
  /** Length of one saturation or connection-rate run. */
  readonly loadSeconds: number;
  /** Length of one fixed-rate run (more seconds, more samples behind p99). */
  readonly fixedSeconds: number;
  readonly bulkSeconds: number;
  readonly fixedRate: number;
  /** wrk connections for saturation; one wrk thread, see README (pinning). */
  readonly wrkConnections: number;
  readonly idleConnections: number;
  /**
   * How long the idle connections are held, once all are up, before RSS is read. Default: the
   * settle pause. Longer (30 s) reads it after the agent's memory reclaim, which runs 20 s after
   * a burst, has returned what the burst of connection setups left (src/app/memory-reclaim.ts).
   */
  readonly idleReadAfterMs: number;
  /**
   * The hard limit on open files, which the harness cannot raise (that needs
   * CAP_SYS_RESOURCE): every process it starts runs with soft = hard = this.
   */
  readonly fdLimit: number;
  /** How long `weft sim up --mesh ebpf` may take before weft counts as not available. */
  readonly meshUpSeconds: number;
  /** Pause between runs, and before/after holding idle connections, for the proxies to settle. */
  readonly settleMs: number;
  readonly outDir: string;
  readonly paths: readonly PathName[];
  readonly scenarios: readonly string[] | undefined;
  /** CPU for the proxies (HAProxy, weft agents) and CPU for everything else. */
  readonly proxyCpu: string;
  readonly loadCpu: string;
  /** The whole run is aborted (and cleaned up) past this. */
  readonly deadlineSeconds: number;
}

export const USAGE = `npm run bench -- [--quick] [--reps N] [--seconds S] [--paths direct,haproxy,weft]
                      [--scenarios fixed-rate,idle,saturation,http1,h2,conn-rate,bulk] [--idle-connections N]
                      [--idle-read-after S] [--mesh-timeout S] [--proxy-cpus LIST] [--load-cpus LIST] [--out DIR]`;

/** The hard RLIMIT_NOFILE of this process (what children may raise their soft limit to). */
export function hardFdLimit(limits: string = readFileSync('/proc/self/limits', 'utf8')): number {
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(limits);
  const n = m?.[1] === 'unlimited' ? 1 << 20 : Number(m?.[1]);
  return Number.isFinite(n) && n > 0 ? Math.min(n, 1 << 20) : 1024;
}

/** Idle connections one proxy process can relay: two descriptors each, plus some for itself. */
export function maxRelayedConnections(fdLimit: number): number {
  return Math.max(1, Math.floor((fdLimit - 256) / 2));
}

/**
 * Idle connections every path can hold under the same fd limit: HAProxy's two descriptors each
 * (maxRelayedConnections), and weft's agent, which keeps part of its descriptors from
 * connections (a reserve, pending handshakes: src/app/fd-budget.ts) and counts two per
 * outbound connection. The bench's agents let its one client pod hold them all
 * (weftAgentArgs), so neither proxy's cap is what the idle rows measure.
 */
export function idleConnectionsEveryPathHolds(fdLimit: number): number {
  // 256 descriptors to spare, as for HAProxy: the agents' own pooled and tunnel sockets count too.
  return Math.max(1, Math.min(maxRelayedConnections(fdLimit), Math.floor((fdBudget(fdLimit).connectionFds - 256) / 2)));
}

/**
 * `weft agent` flags of the bench's mesh: one pod (bench-mesh/m-client) opens every idle
 * connection, past the per-source cap an agent gives a pod by default (a quarter of its
 * connection budget), so that pod may hold the agent's whole budget (HAProxy has no per-source cap).
 */
export function weftAgentArgs(fdLimit: number): string[] {
  return ['--max-fds-per-source', String(Math.max(2, fdBudget(fdLimit).connectionFds))];
}

/** A taskset CPU list such as `0`, `0-1` or `0,2`. */
function cpuList(v: string | undefined, flag: string, fallback: string): string {
  if (v === undefined) return fallback;
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(v)) throw new Error(`${flag} must be a CPU list for taskset such as 0, 0-1 or 0,2; got ${JSON.stringify(v)}`);
  return v;
}

function positiveInt(v: string | undefined, flag: string, fallback: number, max: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`${flag} must be a whole number from 1 to ${max}, got ${JSON.stringify(v)}\nusage: ${USAGE}`);
  return n;
}

export function parseOptions(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean' }, reps: { type: 'string' }, seconds: { type: 'string' }, paths: { type: 'string' },
      scenarios: { type: 'string' }, 'idle-connections': { type: 'string' }, 'idle-read-after': { type: 'string' }, 'mesh-timeout': { type: 'string' },
      'proxy-cpus': { type: 'string' }, 'load-cpus': { type: 'string' },
      out: { type: 'string' }, help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help === true) throw new Error(`usage: ${USAGE}`);
  const quick = values.quick === true;
  const reps = positiveInt(values.reps, '--reps', quick ? 1 : 5, 50);
  const loadSeconds = positiveInt(values.seconds, '--seconds', quick ? 1 : 10, 120);
  const paths = values.paths === undefined ? PATH_NAMES : values.paths.split(',').map((p) => p.trim());
  for (const p of paths) {
    if (!(PATH_NAMES as readonly string[]).includes(p)) throw new Error(`--paths: unknown path ${JSON.stringify(p)} (known: ${PATH_NAMES.join(', ')})`);
  }
  if (!paths.includes('direct')) throw new Error('--paths must include direct: every other path is reported relative to it');
  const cpus = availableParallelism();
  const fixedSeconds = quick ? 1 : Math.max(15, loadSeconds);
  const bulkSeconds = quick ? 1 : Math.max(5, Math.round(loadSeconds / 2));
  const fdLimit = hardFdLimit();
  const idleMax = idleConnectionsEveryPathHolds(fdLimit);
  // 10,000 is the goal; a machine whose fd limit is lower gets as many as every proxy can relay.
  const idleConnections = positiveInt(values['idle-connections'], '--idle-connections', quick ? 300 : Math.min(10_000, idleMax), idleMax);
  const settleMs = quick ? 100 : 1000;
  const idleReadAfterMs = values['idle-read-after'] === undefined ? settleMs : positiveInt(values['idle-read-after'], '--idle-read-after', 1, 300) * 1000;
  // Rough upper bound of the run, doubled: a stuck tool cannot keep the bench alive forever.
  const perRep = 8 * (Math.max(2, loadSeconds) + 3) + 6 * (Math.max(3, fixedSeconds) + 3) + 4 * (bulkSeconds + 3) + 2 * (20 + Math.ceil(idleReadAfterMs / 1000));
  return Object.freeze({
    quick, reps, loadSeconds, fixedSeconds, bulkSeconds, fixedRate: 1000,
    wrkConnections: quick ? 16 : 64, idleConnections, idleReadAfterMs, fdLimit,
    meshUpSeconds: positiveInt(values['mesh-timeout'], '--mesh-timeout', quick ? 60 : 120, 600), settleMs,
    outDir: values.out ?? join(import.meta.dirname, 'results'),
    paths: Object.freeze(paths as PathName[]),
    scenarios: values.scenarios === undefined ? undefined : Object.freeze(values.scenarios.split(',').map((s) => s.trim())),
    proxyCpu: cpuList(values['proxy-cpus'], '--proxy-cpus', '0'),
    loadCpu: cpuList(values['load-cpus'], '--load-cpus', cpus >= 2 ? '1' : '0'),
    deadlineSeconds: 120 + 2 * reps * PATH_NAMES.length * perRep,
  });
}
