// Every open connection of one proxy runtime (all its listeners), with what a policy re-check
// or a per-source cap needs to know about it, and a way to end it with a recorded reason.
// A listener's ConnectionTracker adds entries at accept and removes them once, when the
// connection's record is written.

import type { AuthorizationRequest } from '../model/authorize.ts';

/** Which listener accepted a connection. */
export type ListenerKind = 'outbound' | 'inbound-tunnel' | 'inbound-plain';

/** How a connection ends when something outside its handler ends it. */
export interface ConnectionEnding {
  /** A ResponseFlags value (e.g. DENY for a policy that no longer allows it). */
  readonly flags: string;
  readonly detail: string;
}

/** One open connection (a tunnel stream counts as one), as the registry shows it. */
export interface LiveConnection {
  /** Unique within the runtime, in accept order. */
  readonly id: number;
  readonly listener: ListenerKind;
  /** 'source' on the outbound side, 'destination' on the inbound ones (the telemetry reporter). */
  readonly reporter: 'source' | 'destination';
  /** The peer address that connected (for a tunnel stream: the Forwarded client, else the peer agent). */
  readonly sourceIp: string;
  /** Monotonic milliseconds at accept. */
  readonly openedAt: number;
  /**
   * The authorization requests this connection was allowed under, in the order they were
   * checked (one for an L4 connection; one per distinct destination for HTTP). Empty while
   * no policy check has passed (not routed yet, or outside the mesh: nothing to re-check).
   */
  readonly authorized: readonly AuthorizationRequest[];
  /** Set once the connection was ended through `end`. */
  readonly endedBy: ConnectionEnding | undefined;
  /** Fires when the connection must end now (drain deadline, destroy, or `end`). */
  readonly signal: AbortSignal;
  /**
   * Calls `callback` once when a drain starts (before the deadline ends the connection), so a
   * connection that can end gracefully (HTTP: close when idle, GOAWAY) does. At once if the drain
   * already started.
   */
  onDrain(callback: () => void): void;
  /** Records a passed policy check (bounded: the oldest is dropped past 32). */
  allowed(request: AuthorizationRequest): void;
  /**
   * Ends the connection now: both sides are reset and its record carries `ending` instead of
   * the drain flag. The first reason wins; safe to repeat.
   */
  end(ending: ConnectionEnding): void;
}

/** Decides at accept whether a connection may proceed (per-source caps, accounting). */
export interface ConnectionGate {
  /** Undefined admits; an ending refuses it at once (reset, recorded with that ending). */
  admit(connection: LiveConnection): ConnectionEnding | undefined;
  /** Called once for every admitted connection, when it is over. */
  released(connection: LiveConnection): void;
}

const MAX_AUTHORIZED = 32;

/**
 * How many connections one event-loop turn ends at most (`endWhere`): resetting thousands in
 * one turn keeps every other connection's I/O, and the reset sockets' own close callbacks,
 * waiting until the last one is done.
 */
export const END_BATCH = 256;

/**
 * The abort reason of every connection that is ended: one object, made once, rather than an
 * AbortError (with its stack) per connection when thousands end together.
 */
const ENDED = Object.freeze(new DOMException('the connection was ended', 'AbortError'));

/** @internal The registry's own entry; listeners see it as LiveConnection. */
export class RegisteredConnection implements LiveConnection {
  readonly id: number;
  readonly listener: ListenerKind;
  readonly reporter: 'source' | 'destination';
  readonly sourceIp: string;
  readonly openedAt: number;
  readonly #controller = new AbortController();
  #authorized: AuthorizationRequest[] = [];
  #endedBy: ConnectionEnding | undefined;
  #drainCallbacks: Array<() => void> | undefined;
  #draining = false;

  constructor(id: number, listener: ListenerKind, sourceIp: string, openedAt: number) {
    this.id = id;
    this.listener = listener;
    this.reporter = listener === 'outbound' ? 'source' : 'destination';
    this.sourceIp = sourceIp;
    this.openedAt = openedAt;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get authorized(): readonly AuthorizationRequest[] {
    return this.#authorized;
  }

  get endedBy(): ConnectionEnding | undefined {
    return this.#endedBy;
  }

  onDrain(callback: () => void): void {
    if (this.#draining) {
      callback();
      return;
    }
    (this.#drainCallbacks ??= []).push(callback);
  }

  /** The listener started draining. */
  startDrain(): void {
    if (this.#draining) return;
    this.#draining = true;
    const callbacks = this.#drainCallbacks ?? [];
    this.#drainCallbacks = undefined;
    for (const cb of callbacks) cb();
  }

  allowed(request: AuthorizationRequest): void {
    const same = this.#authorized.find((r) => r.destinationWorkload.key === request.destinationWorkload.key
      && r.destinationPort === request.destinationPort && r.sourcePrincipal === request.sourcePrincipal);
    if (same !== undefined) return;
    if (this.#authorized.length >= MAX_AUTHORIZED) this.#authorized = this.#authorized.slice(1);
    this.#authorized.push(request);
  }

  end(ending: ConnectionEnding): void {
    this.#endedBy ??= ending;
    this.abort();
  }

  /** Ends it without a reason of its own (drain): the handler records DRAIN. */
  abort(): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(ENDED);
  }
}

export class ConnectionRegistry {
  readonly #live = new Set<RegisteredConnection>();
  #nextId = 1;

  /** @internal For ConnectionTracker. */
  add(listener: ListenerKind, sourceIp: string, openedAt: number): RegisteredConnection {
    const c = new RegisteredConnection(this.#nextId++, listener, sourceIp, openedAt);
    this.#live.add(c);
    return c;
  }

  /** @internal For ConnectionTracker. */
  delete(c: RegisteredConnection): void {
    this.#live.delete(c);
  }

  get size(): number {
    return this.#live.size;
  }

  /** The open connections, in accept order. A snapshot: ending one while iterating is safe. */
  connections(): LiveConnection[] {
    return [...this.#live];
  }

  /**
   * Ends every open connection `select` picks, with the ending it gives for that connection.
   * All are judged at once (against one state), then ended `batch` per event-loop turn; a
   * connection that ended by itself meanwhile is left alone. Resolves how many it ended.
   */
  async endWhere(select: (c: LiveConnection) => ConnectionEnding | undefined, batch = END_BATCH): Promise<number> {
    const chosen: [RegisteredConnection, ConnectionEnding][] = [];
    for (const c of this.#live) {
      const ending = select(c);
      if (ending !== undefined) chosen.push([c, ending]);
    }
    const step = Math.max(1, Math.floor(batch));
    let n = 0;
    for (let i = 0; i < chosen.length; i += step) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      // The resets make errors nobody reads a stack of (Node's for each reset stream, and
      // its stack is formatted at once): capturing none keeps a batch cheap.
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try {
        for (const [c, ending] of chosen.slice(i, i + step)) {
          if (!this.#live.has(c) || c.endedBy !== undefined) continue;
          c.end(ending);
          n += 1;
        }
      } finally {
        Error.stackTraceLimit = limit;
      }
    }
    return n;
  }
}
