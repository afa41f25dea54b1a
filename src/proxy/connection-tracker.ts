// The connections one listener is serving, so drain() can wait for them and then end them.
// Each is also entered in the runtime's ConnectionRegistry (shared by every listener).

import { ConnectionRegistry, type ListenerKind, type RegisteredConnection } from './connection-registry.ts';

export interface TrackedConnection {
  readonly entry: RegisteredConnection;
  /** Fires when the connection must end now (drain deadline, destroy, or the registry ended it). */
  readonly signal: AbortSignal;
  /** Call exactly once when the connection is fully over. */
  done(): void;
}

export class ConnectionTracker {
  readonly #kind: ListenerKind;
  readonly #registry: ConnectionRegistry;
  readonly #now: () => number;
  readonly #live = new Set<RegisteredConnection>();
  #emptyWaiters: Array<() => void> = [];

  constructor(kind: ListenerKind, registry: ConnectionRegistry = new ConnectionRegistry(), now: () => number = () => performance.now()) {
    this.#kind = kind;
    this.#registry = registry;
    this.#now = now;
  }

  track(sourceIp: string): TrackedConnection {
    const entry = this.#registry.add(this.#kind, sourceIp, this.#now());
    this.#live.add(entry);
    return new Tracked(this, entry);
  }

  /** @internal For Tracked. */
  untrack(entry: RegisteredConnection): void {
    this.#live.delete(entry);
    this.#registry.delete(entry);
    if (this.#live.size === 0) this.#wakeEmpty();
  }

  get size(): number {
    return this.#live.size;
  }

  /** Resolves when no connection is left. */
  whenEmpty(): Promise<void> {
    if (this.#live.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#emptyWaiters.push(resolve));
  }

  /** Ends every connection now (their handlers record and call done()). */
  abortAll(): void {
    for (const c of [...this.#live]) c.abort();
  }

  /** Waits up to `deadlineMs` for connections to end by themselves, then ends the rest. */
  async drain(deadlineMs: number): Promise<void> {
    for (const c of [...this.#live]) c.startDrain();
    if (this.#live.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, deadlineMs));
        timer.unref();
      });
      await Promise.race([this.whenEmpty(), deadline]);
      clearTimeout(timer);
    }
    this.abortAll();
    await this.whenEmpty();
  }

  #wakeEmpty(): void {
    const waiters = this.#emptyWaiters;
    this.#emptyWaiters = [];
    for (const w of waiters) w();
  }
}

/** One tracked connection: an object, not a closure, as it lives as long as the connection. */
class Tracked implements TrackedConnection {
  readonly #tracker: ConnectionTracker;
  readonly entry: RegisteredConnection;
  #finished = false;

  constructor(tracker: ConnectionTracker, entry: RegisteredConnection) {
    this.#tracker = tracker;
    this.entry = entry;
  }

  get signal(): AbortSignal {
    return this.entry.signal;
  }

  done(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#tracker.untrack(this.entry);
  }
}

/** The signal for a connection's setup phase, and how to stop listening once it is over. */
export interface SetupSignal {
  readonly signal: AbortSignal;
  /** Detaches the listeners; call when setup is over so a normal close aborts nothing. */
  dispose(): void;
}

interface Closable {
  readonly destroyed: boolean;
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

/**
 * Fires when the connection is drained or the client side closes (it gave up while we were
 * connecting upstream). Aborting costs a DOMException, so nothing aborts on the normal path.
 */
export function setupSignal(drain: AbortSignal, side: Closable): SetupSignal {
  const c = new AbortController();
  const abort = (): void => c.abort();
  if (drain.aborted || side.destroyed) abort();
  else {
    drain.addEventListener('abort', abort, { once: true });
    side.once('close', abort);
  }
  return {
    signal: c.signal,
    dispose: () => {
      drain.removeEventListener('abort', abort);
      side.off('close', abort);
    },
  };
}
