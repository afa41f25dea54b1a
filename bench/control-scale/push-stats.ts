// The control plane's own side of a push, from its server's events, for the scale benchmark:
// how long after a publish every agent's stream had been handed that generation (what the
// control plane controls), apart from how long the agents took to read it and answer (what
// the benchmark's own agents, on the same cores, add). Measured inside the control plane's
// process, between start() and stop().

import type { ControlServerEvent } from '../../src/control/server.ts';

export interface PushStats {
  /** Generations published while measuring, and how many of them reached every agent's stream. */
  readonly generations: number;
  readonly complete: number;
  /** Publish -> handed to the stream of every agent, per generation. */
  readonly allWrittenP50Ms: number;
  readonly allWrittenP99Ms: number;
  readonly allWrittenMaxMs: number;
  /** Per push: from the first change it carries being published to its write (includes waiting for the agent's previous answer). */
  readonly waitedP50Ms: number;
  readonly waitedP99Ms: number;
  /** Per push: written -> the agent's ACK read. */
  readonly roundTripP50Ms: number;
  readonly roundTripP99Ms: number;
  readonly pushes: number;
}

function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.min(s.length - 1, Math.floor(q * s.length))]);
}

export class PushStatsRecorder {
  readonly #agents = new Set<string>();
  /** node -> the newest generation handed to its stream. */
  readonly #written = new Map<string, number>();
  #on = false;
  /** generation -> { published at, agents handed it so far, when the last was } */
  #gens = new Map<number, { readonly at: number; count: number; all: number | undefined }>();
  #waited: number[] = [];
  #rtt: number[] = [];

  onEvent(e: ControlServerEvent): void {
    const now = performance.now();
    if (e.type === 'subscribed') this.#agents.add(e.node);
    else if (e.type === 'disconnected') this.#agents.delete(e.node);
    else if (e.type === 'published') {
      if (this.#on && !this.#gens.has(e.generation)) this.#gens.set(e.generation, { at: now, count: 0, all: undefined });
    } else if (e.type === 'pushed') {
      const before = this.#written.get(e.node) ?? 0;
      if (e.generation > before) this.#written.set(e.node, e.generation);
      if (!this.#on || e.trigger !== 'change') return;
      this.#waited.push(e.waitedMs);
      // O(the generations this push moves the agent over): usually one.
      for (let g = before + 1; g <= e.generation; g++) {
        const s = this.#gens.get(g);
        if (s === undefined) continue;
        s.count++;
        if (s.count >= this.#agents.size) s.all ??= now;
      }
    } else if (e.type === 'ack' && this.#on) this.#rtt.push(e.roundTripMs);
  }

  start(): void {
    this.#on = true;
    this.#gens = new Map();
    this.#waited = [];
    this.#rtt = [];
  }

  stop(): PushStats {
    this.#on = false;
    const all = [...this.#gens.values()].flatMap((s) => (s.all === undefined ? [] : [s.all - s.at]));
    return {
      generations: this.#gens.size, complete: all.length,
      allWrittenP50Ms: quantile(all, 0.5), allWrittenP99Ms: quantile(all, 0.99), allWrittenMaxMs: quantile(all, 1),
      waitedP50Ms: quantile(this.#waited, 0.5), waitedP99Ms: quantile(this.#waited, 0.99),
      roundTripP50Ms: quantile(this.#rtt, 0.5), roundTripP99Ms: quantile(this.#rtt, 0.99), pushes: this.#waited.length,
    };
  }
}
