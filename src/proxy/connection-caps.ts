// Connection caps at accept (the ConnectionGate every listener asks): a cap per source (a
// pod's address; for a tunnel stream the client it carries) and a global one, both counted in
// the file descriptors connections hold, so one pod's flood of idle connections cannot take
// the descriptors other pods' calls need. The global count is shared by every worker thread
// (they share one descriptor table) through an Int32Array over a SharedArrayBuffer; the
// per-source count is this worker's (SO_REUSEPORT spreads one source's connections evenly, so
// each worker gets its share of the per-source cap).

import type { ConnectionEnding, ConnectionGate, ListenerKind, LiveConnection } from './connection-registry.ts';
import type { OverloadObserver } from './contracts.ts';
import { ResponseFlags } from './flags.ts';

/** Descriptors one connection holds: outbound and plaintext a client and an upstream socket; a tunnel stream its pod socket. */
export const FD_COST: Readonly<Record<ListenerKind, number>> = Object.freeze({ outbound: 2, 'inbound-tunnel': 1, 'inbound-plain': 2 });

export type CapHit = 'source' | 'global';

/** Pure: whether a connection costing `cost` descriptors fits. */
export function capDecision(o: { sourceHeld: number; globalHeld: number; cost: number; perSource: number; global: number }): CapHit | undefined {
  if (o.sourceHeld + o.cost > o.perSource) return 'source';
  if (o.globalHeld + o.cost > o.global) return 'global';
  return undefined;
}

/** Told about every refusal (telemetry counts them and logs at a bounded rate). */
export type CapObserver = Pick<OverloadObserver, 'capHit'>;

export interface ConnectionCapsOptions {
  /** Descriptors all connections of all workers may hold together. */
  readonly globalFds: number;
  /** Descriptors one source's connections may hold in this worker. */
  readonly perSourceFds: number;
  /** Index 0: descriptors held by connections, all workers together. A private one when absent. */
  readonly shared?: Int32Array;
  readonly observer?: CapObserver;
}

export class ConnectionCaps implements ConnectionGate {
  readonly #global: number;
  readonly #perSource: number;
  readonly #shared: Int32Array;
  #observer: CapObserver | undefined;
  readonly #bySource = new Map<string, number>();
  #held = 0;

  constructor(o: ConnectionCapsOptions) {
    this.#global = o.globalFds;
    this.#perSource = o.perSourceFds;
    this.#shared = o.shared ?? new Int32Array(new SharedArrayBuffer(4));
    this.#observer = o.observer;
  }

  /** Where refusals are reported (telemetry built after the caps it shows). */
  observe(observer: CapObserver): void {
    this.#observer = observer;
  }

  /** Descriptors this worker's connections hold. */
  get held(): number {
    return this.#held;
  }

  /** Descriptors every worker's connections hold. */
  get heldGlobally(): number {
    return Atomics.load(this.#shared, 0);
  }

  get limits(): { readonly globalFds: number; readonly perSourceFds: number } {
    return { globalFds: this.#global, perSourceFds: this.#perSource };
  }

  admit(c: LiveConnection): ConnectionEnding | undefined {
    return this.take(c.sourceIp, FD_COST[c.listener], c.listener);
  }

  released(c: LiveConnection): void {
    this.give(c.sourceIp, FD_COST[c.listener]);
  }

  /**
   * Takes `cost` descriptors for a socket of `sourceIp`'s that is not a connection of its own
   * (the HTTP layer's pooled pod connections): refused, counted and logged like a connection
   * when it does not fit. Give them back with give().
   */
  take(sourceIp: string, cost: number, listener: ListenerKind | 'http-pool'): ConnectionEnding | undefined {
    const sourceHeld = this.#bySource.get(sourceIp) ?? 0;
    // Reserve first, then check: two workers cannot both take the last descriptors.
    const globalHeld = Atomics.add(this.#shared, 0, cost);
    const hit = capDecision({ sourceHeld, globalHeld, cost, perSource: this.#perSource, global: this.#global });
    if (hit !== undefined) {
      Atomics.sub(this.#shared, 0, cost);
      this.#observer?.capHit(listener, hit, sourceIp);
      return {
        flags: ResponseFlags.OVERLOADED,
        detail: hit === 'source'
          ? `source ${sourceIp} holds ${sourceHeld} of its ${this.#perSource} connection descriptors (per source, this worker)`
          : `the agent's connections hold ${globalHeld} of ${this.#global} descriptors`,
      };
    }
    this.#bySource.set(sourceIp, sourceHeld + cost);
    this.#held += cost;
    return undefined;
  }

  give(sourceIp: string, cost: number): void {
    Atomics.sub(this.#shared, 0, cost);
    this.#held -= cost;
    const left = (this.#bySource.get(sourceIp) ?? cost) - cost;
    if (left <= 0) this.#bySource.delete(sourceIp);
    else this.#bySource.set(sourceIp, left);
  }
}
