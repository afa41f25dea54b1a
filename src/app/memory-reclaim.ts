// Memory that comes back after a flood or churn (issue 16). Node keeps what a flood allocated:
// V8 collects the old generation only when it next fills (an agent back at its usual load may
// not get there for many minutes), and glibc keeps freed heap in its arenas. So the agent
// watches two signals and, when either says a burst is over, every thread collects its garbage
// and hands free heap back to the kernel (malloc_trim):
// - the descriptors held by connections fell to at most half of their peak, by at least
//   `minDrop` (a flood of held connections ended);
// - RSS rose `growthBytes` above its lowest since the last reclaim (churn: a flood of refused
//   or short connections leaves garbage but holds nothing).
// Either schedules one more reclaim `settleMs` later: a flood still going on at the first one
// leaves garbage after it, which that one collects once the flood has ended.
// At most once per `minIntervalMs`, so a steady heavy load does not pay a full collection often.
// Growth that a reclaim does not give back (less than half of it, or of `growthBytes`) is memory a steady
// load uses (V8 grows its heap under HTTP/2's allocation rate), not churn that ended: each such
// reclaim stalls every thread for tens of ms and frees nothing, so the next one for growth waits
// twice as long (up to `maxGrowthWaitMs`); one that gives memory back, or a flood of held
// connections ending, starts the wait again from `minIntervalMs`. The settle after each is kept:
// churn still going on at a reclaim gives nothing back then, and its garbage is collected once it ends.
// Never while a proxy worker holds a source back for fair sharing (source-fairness.ts): that
// flood is still going on, its garbage keeps coming, and a full collection in every worker
// would stall every other pod's requests; the reclaim is kept for when the hold ends.

import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { nativeAddon } from '../core/native-addon.ts';

export interface ReclaimPolicy {
  /** Descriptors the held count must fall by (from its peak) to count as a flood ending. */
  readonly minDrop: number;
  /** RSS growth over its lowest since the last reclaim that triggers one. */
  readonly growthBytes: number;
  /** When the follow-up of a triggered reclaim runs. */
  readonly settleMs: number;
  readonly minIntervalMs: number;
  /** The longest a reclaim for growth waits after reclaims that gave nothing back. */
  readonly maxGrowthWaitMs: number;
}

export const DEFAULT_RECLAIM_POLICY: ReclaimPolicy = Object.freeze({
  minDrop: 512, growthBytes: 32 * 2 ** 20, settleMs: 20_000, minIntervalMs: 10_000, maxGrowthWaitMs: 320_000,
});

export interface ReclaimState {
  /** Most descriptors held since the last reclaim. */
  readonly peak: number;
  /** Lowest RSS since the last reclaim (from the first sample after it). */
  readonly baseline: number;
  /** When the last reclaim ran; undefined before the first. */
  readonly lastAt: number | undefined;
  /** When the follow-up of the last triggered reclaim is due; undefined when none is. */
  readonly settleAt: number | undefined;
  /** How long after the last reclaim one for growth may run (longer after fruitless ones); undefined: minIntervalMs. */
  readonly growthWaitMs?: number;
  /** How far RSS was above its lowest when the last reclaim started. */
  readonly grownBy?: number;
}

export type ReclaimReason = 'flood-ended' | 'rss-grew' | 'settle';

export interface ReclaimSample {
  readonly held: number;
  readonly rss: number;
  readonly now: number;
  /** A worker holds a source back (fair sharing): a flood is on. */
  readonly busy?: boolean;
}

export function initialReclaimState(held: number, rss: number): ReclaimState {
  return { peak: held, baseline: rss, lastAt: undefined, settleAt: undefined };
}

/** One sample's decision: the next state, and why to reclaim now (undefined: not now). */
export function reclaimStep(state: ReclaimState, s: ReclaimSample, policy: ReclaimPolicy): { state: ReclaimState; reclaim: ReclaimReason | undefined } {
  const peak = Math.max(state.peak, s.held);
  const baseline = Math.min(state.baseline, s.rss);
  const reason: ReclaimReason | undefined = peak - s.held >= policy.minDrop && s.held * 2 <= peak
    ? 'flood-ended'
    : s.rss - baseline >= policy.growthBytes
      ? 'rss-grew'
      : state.settleAt !== undefined && s.now >= state.settleAt ? 'settle' : undefined;
  const growthWaitMs = state.growthWaitMs ?? policy.minIntervalMs;
  const wait = reason === 'rss-grew' ? growthWaitMs : policy.minIntervalMs;
  const due = state.lastAt === undefined || s.now - state.lastAt >= wait;
  // Kept for when the hold ends: the settle reclaim is due from then on.
  if (reason !== undefined && s.busy === true) return { state: { ...state, peak, baseline, settleAt: Math.min(state.settleAt ?? s.now, s.now) }, reclaim: undefined };
  if (reason === undefined || !due) return { state: { ...state, peak, baseline }, reclaim: undefined };
  // The baseline starts again from the first sample after the reclaim has run.
  return {
    state: {
      peak: s.held, baseline: Number.POSITIVE_INFINITY, lastAt: s.now, settleAt: reason === 'settle' ? undefined : s.now + policy.settleMs, growthWaitMs,
      // baseline is at most this sample's RSS (min above).
      grownBy: s.rss - baseline,
    },
    reclaim: reason,
  };
}

/** After a reclaim ran: the wait for the next one for growth, by what this one gave back. */
export function reclaimDone(state: ReclaimState, r: { readonly reason: ReclaimReason; readonly rssBefore: number; readonly rssAfter: number }, policy: ReclaimPolicy): ReclaimState {
  const gaveBack = r.rssBefore - r.rssAfter >= Math.max(policy.growthBytes, state.grownBy ?? 0) / 2;
  const growthWaitMs = gaveBack || r.reason === 'flood-ended'
    ? policy.minIntervalMs
    : Math.min(policy.maxGrowthWaitMs, 2 * (state.growthWaitMs ?? policy.minIntervalMs));
  return { ...state, baseline: r.rssAfter, growthWaitMs };
}

/**
 * This thread's reclaim: a full garbage collection, then malloc_trim. `gc` is not exposed
 * without --expose-gc on the command line (which worker threads cannot take); setting the flag
 * makes V8 install it in contexts created afterwards, such as this one.
 */
export function threadReclaimer(): () => void {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  const addon = nativeAddon();
  return () => {
    gc?.();
    if (!(addon instanceof Error)) addon.mallocTrim();
  };
}

export interface MemoryReclaimerDeps {
  /** Descriptors held by connections, all workers. */
  readonly held: () => number;
  /** Whether a worker holds a source back for fair sharing now. Default never. */
  readonly busy?: () => boolean;
  readonly rss: () => number;
  readonly now: () => number;
  /** Reclaims in every thread; resolves once they all have, to how long each thread was stalled (ms). */
  readonly reclaim: () => Promise<readonly (number | undefined)[]>;
  /** `ms`: how long the reclaim took, every thread's in turn; `stallsMs`: each thread's own stall. */
  readonly onReclaimed: (r: { reason: ReclaimReason; rssBefore: number; rssAfter: number; held: number; ms: number; stallsMs: readonly (number | undefined)[] }) => void;
}

/** Samples every `everyMs` and reclaims when reclaimStep says so. */
export class MemoryReclaimer {
  readonly #deps: MemoryReclaimerDeps;
  readonly #policy: ReclaimPolicy;
  #state: ReclaimState;
  #running = false;
  readonly #timer: NodeJS.Timeout;

  constructor(deps: MemoryReclaimerDeps, options: { everyMs?: number; policy?: ReclaimPolicy } = {}) {
    this.#deps = deps;
    this.#policy = options.policy ?? DEFAULT_RECLAIM_POLICY;
    this.#state = initialReclaimState(deps.held(), deps.rss());
    this.#timer = setInterval(() => void this.tick(), options.everyMs ?? 2_000);
    this.#timer.unref();
  }

  /** One sample (the timer's; tests call it directly). */
  async tick(): Promise<void> {
    if (this.#running) return;
    const sample = { held: this.#deps.held(), rss: this.#deps.rss(), now: this.#deps.now(), busy: this.#deps.busy?.() ?? false };
    const step = reclaimStep(this.#state, sample, this.#policy);
    this.#state = step.state;
    if (step.reclaim === undefined) return;
    this.#running = true;
    try {
      const started = performance.now();
      const stallsMs = await this.#deps.reclaim();
      const ms = Math.round(performance.now() - started);
      const rssAfter = this.#deps.rss();
      this.#state = reclaimDone(this.#state, { reason: step.reclaim, rssBefore: sample.rss, rssAfter }, this.#policy);
      this.#deps.onReclaimed({ reason: step.reclaim, rssBefore: sample.rss, rssAfter, held: sample.held, ms, stallsMs });
    } finally {
      this.#running = false;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/**
 * The agent's reclaimer: `shared[0]` is the descriptors its workers' connections hold,
 * `shared[2]` the sources they hold back; a reclaim runs in each worker in turn, then in this thread. Logged, and counted in
 * weft_agent_memory_reclaims_total{reason}.
 */
export function agentReclaimer(workers: { reclaim(): Promise<readonly (number | undefined)[]> }, shared: Int32Array, logger: Logger, registry: Registry): MemoryReclaimer {
  const self = threadReclaimer();
  const reclaims = new Counter({
    name: 'weft_agent_memory_reclaims_total', help: 'Garbage collections and heap trims run after a flood or churn ended', labelNames: ['reason'], registers: [registry],
  });
  const mib = (b: number): number => Math.round(b / 2 ** 20);
  return new MemoryReclaimer({
    held: () => Atomics.load(shared, 0),
    busy: () => Atomics.load(shared, 2) > 0,
    rss: () => process.memoryUsage.rss(),
    now: () => Date.now(),
    reclaim: async () => {
      const stalls = await workers.reclaim();
      const started = performance.now();
      self();
      return [...stalls, performance.now() - started];
    },
    onReclaimed: (r) => {
      reclaims.inc({ reason: r.reason });
      // stallsMs: each worker's, then this thread's (how long each stopped serving).
      logger.info({ reason: r.reason, rssMiB: mib(r.rssBefore), rssAfterMiB: mib(r.rssAfter), heldFds: r.held, ms: r.ms, stallsMs: r.stallsMs.map((x) => (x === undefined ? null : Math.round(x))) }, 'memory reclaimed');
    },
  });
}
