// The one Listener contract (listen, close, drain, destroy, connections) and the one
// connection skeleton every listener serves through: the connection enters the runtime's
// registry and passes the accept gate (caps; a refusal is reset at once), the record opens,
// the listener's handler runs, and exactly once, in `finally`, the record is written and the
// entry removed, whatever way it ended. A listening socket that fails to accept (EMFILE,
// ENFILE, ENOBUFS) is counted and the listener keeps accepting.

import type { AddressInfo, Server } from 'node:net';

import { describeError } from '../core/errors.ts';
import type { ConnectionEnding, ConnectionGate, ConnectionRegistry, ListenerKind, LiveConnection } from './connection-registry.ts';
import type { ConnectionObserver, ConnectionRateGate, ConnectionRecord, OverloadObserver, TraceCarrier } from './contracts.ts';
import { NO_OVERLOAD_OBSERVER, NO_TELEMETRY } from './contracts.ts';
import { ConnectionTracker, type TrackedConnection } from './connection-tracker.ts';
import { ResponseFlags } from './flags.ts';
import { listen, stopListening, type ListenOptions } from './listen.ts';
import { resetSide, type SpliceOptions, type SpliceSide } from './splice.ts';
import type { SourceFairness } from './resilience/source-fairness.ts';

/** What every listener offers its owner. `close` and `destroy` are safe to call twice. */
export interface Listener {
  listen(): Promise<AddressInfo>;
  /** Stops accepting; open connections go on. */
  close(): Promise<void>;
  /** Stops accepting, lets connections finish up to `deadlineMs`, then resets the rest. */
  drain(deadlineMs: number): Promise<void>;
  /** Stops accepting and resets every open connection now. */
  destroy(): Promise<void>;
  /** Connections (tunnel streams) open now. */
  readonly connections: number;
}

/** How a connection ended: a ResponseFlags value and a log detail. */
export type Ending = readonly [flags: string, detail?: string];

/** What every listener takes besides its own dependencies. */
export interface ListenerCommonDeps {
  readonly observer?: ConnectionObserver;
  /** The runtime's registry of open connections; a private one when absent. */
  readonly registry?: ConnectionRegistry;
  /** Admits or refuses connections at accept; everything is admitted when absent. */
  readonly gate?: ConnectionGate;
  /** How spliced sockets close (SO_LINGER) and the half-closed idle timeout. */
  readonly splice?: SpliceOptions;
  /** Told about accept failures (and, by the gate and the tunnel, about caps hit). */
  readonly overload?: OverloadObserver;
  /** New opaque connections to a pod of this node draw on its L4 rate limits; none when absent. */
  readonly connectionRate?: ConnectionRateGate;
  /**
   * Holds back the connections of a source that is saturating this worker (they wait, unread,
   * before the handler runs, bounded by the descriptor caps); every connection goes on at once when absent.
   */
  readonly fairness?: Pick<SourceFairness, 'admit'>;
}

/** What a listener's handler gets for one accepted connection. */
export interface Accepted {
  readonly record: ConnectionRecord;
  readonly live: LiveConnection;
  /** Fires when the connection must end now (drain, destroy, or the registry ended it). */
  readonly signal: AbortSignal;
  /**
   * For a handler that hands the connection to something that outlives its own call (a kernel
   * pair held by the addon): the skeleton's end-of-connection work (record, gate, registry)
   * then waits for `end` on what this returns, and what the handler returns is ignored.
   */
  handOver(): HandedOver;
}

/** The end of a handed-over connection's skeleton. */
export interface HandedOver {
  readonly live: LiveConnection;
  /** Writes the record (the registry's ending wins over `ending`), releases the gate and the entry. Once; safe twice. */
  end(ending: Ending): void;
}

export interface ServeOptions {
  /**
   * Reset the downstream when the handler returns a failure. The outbound and plaintext
   * listeners do (a refused connect looks like one); the tunnel has answered with a status.
   * A handler that throws always gets its downstream reset.
   */
  readonly resetOnFailure: boolean;
  /** How a connection the gate refused is turned away (default: reset; the tunnel answers 503). */
  readonly refuse?: (downstream: SpliceSide) => void;
  /** Headers whose trace context the connection's record continues (the tunnel's CONNECT). */
  readonly incoming?: TraceCarrier;
}

const ignore = (): void => undefined;

/** One served connection's skeleton state: an object (no closures), as a handed-over one idles in it. */
class ServedConnection implements Accepted, HandedOver {
  readonly record: ConnectionRecord;
  readonly #tracked: TrackedConnection;
  readonly #gate: ConnectionGate | undefined;
  handedOver = false;
  #ended = false;

  constructor(record: ConnectionRecord, tracked: TrackedConnection, gate: ConnectionGate | undefined) {
    this.record = record;
    this.#tracked = tracked;
    this.#gate = gate;
  }

  get live(): LiveConnection {
    return this.#tracked.entry;
  }

  get signal(): AbortSignal {
    return this.#tracked.signal;
  }

  handOver(): HandedOver {
    this.handedOver = true;
    return this;
  }

  end(ending: Ending): void {
    if (this.#ended) return;
    this.#ended = true;
    const endedBy = this.#tracked.entry.endedBy;
    if (endedBy !== undefined) this.record.finish(endedBy.flags, endedBy.detail);
    else this.record.finish(ending[0], ending[1]);
    this.#gate?.released(this.#tracked.entry);
    this.#tracked.done();
  }
}

/** The lifecycle and the connection skeleton one listener composes (never subclassed). */
export class ListenerCore {
  readonly #server: Server;
  readonly #where: ListenOptions;
  readonly #what: string;
  readonly #observer: ConnectionObserver;
  readonly #gate: ConnectionGate | undefined;
  readonly #tracker: ConnectionTracker;
  readonly #kind: ListenerKind;
  readonly #overload: OverloadObserver;
  readonly #fairness: Pick<SourceFairness, 'admit'> | undefined;
  /** What the listener passes to splice(). */
  readonly spliceOptions: SpliceOptions;

  constructor(kind: ListenerKind, server: Server, where: ListenOptions, deps: ListenerCommonDeps) {
    this.spliceOptions = deps.splice ?? {};
    this.#kind = kind;
    this.#overload = deps.overload ?? NO_OVERLOAD_OBSERVER;
    this.#server = server;
    this.#where = where;
    this.#what = kind.replace('-', ' ');
    this.#observer = deps.observer ?? NO_TELEMETRY;
    this.#gate = deps.gate;
    this.#fairness = deps.fairness;
    this.#tracker = new ConnectionTracker(kind, deps.registry);
  }

  get observer(): ConnectionObserver {
    return this.#observer;
  }

  async listen(): Promise<AddressInfo> {
    const address = await listen(this.#server, this.#what, this.#where);
    // From now on an 'error' is a failed accept (out of descriptors, or of kernel memory):
    // libuv keeps accepting, so it is counted, not fatal. Without a listener it would throw.
    this.#server.on('error', (err: NodeJS.ErrnoException) => this.#overload.acceptFailed(this.#kind, err.code ?? 'unknown'));
    return address;
  }

  get connections(): number {
    return this.#tracker.size;
  }

  stopAccepting(): void {
    stopListening(this.#server);
  }

  /** Waits up to `deadlineMs` for open connections to end, then ends the rest (DRAIN). */
  drainConnections(deadlineMs: number): Promise<void> {
    return this.#tracker.drain(deadlineMs);
  }

  /**
   * Serves one accepted connection through `handler`. Never rejects: a throw is recorded as
   * UF with its description and resets the downstream.
   */
  async serve(downstream: SpliceSide, sourceIp: string, handler: (a: Accepted) => Promise<Ending>, o: ServeOptions): Promise<void> {
    downstream.on('error', ignore);
    const tracked = this.#tracker.track(sourceIp);
    const live = tracked.entry;
    // A refusal by a cap is reset at once and gets no record of its own: a flood of them must
    // not become a flood of access-log lines. The gate's observer counts and logs them (bounded).
    if (this.#gate?.admit(live) !== undefined) {
      (o.refuse ?? resetSide)(downstream);
      tracked.done();
      return;
    }
    // A held source's connection waits here, unread (bounded by the descriptor caps it already
    // passed); refused (drained meanwhile) it is reset like a cap refusal, counted by the
    // fairness observer, no record.
    const admission = this.#fairness?.admit(sourceIp, 'connection', tracked.signal);
    if (admission !== undefined && admission !== 'now' && await admission === 'refused') {
      (o.refuse ?? resetSide)(downstream);
      this.#gate?.released(live);
      tracked.done();
      return;
    }
    const served = new ServedConnection(this.#observer.open(o.incoming), tracked, this.#gate);
    let ending: Ending = [ResponseFlags.OK];
    let threw = false;
    try {
      ending = await handler(served);
    } catch (err: unknown) {
      threw = true;
      ending = [ResponseFlags.UPSTREAM_CONNECT_FAILURE, describeError(err)];
    } finally {
      // A handed-over connection ends later, through served.end, by whoever holds it now.
      if (!served.handedOver) {
        const endedBy: ConnectionEnding | undefined = live.endedBy;
        if (threw || endedBy !== undefined || (o.resetOnFailure && ending[0] !== ResponseFlags.OK)) resetSide(downstream);
        served.end(ending);
      }
    }
  }
}
