// Pending TLS handshakes on the tunnel port, bounded: a connection that has not finished its
// handshake holds a descriptor and some memory and proves nothing, so there may be at most
// `maxPending` of them in all (every worker together, through a shared counter) and
// `maxPendingPerSource` from one address (this worker's share); past either the connection is
// closed at once. Under pressure (more than `pressureShare` of the global cap pending) new
// handshakes get the shorter timeout, so a flood of idle connections drains faster than it
// fills.

import type { Socket } from 'node:net';

import type { OverloadObserver } from './contracts.ts';

export interface HandshakeLimits {
  /** Pending handshakes, all workers together. Default 1024. */
  readonly maxPending: number;
  /** Pending handshakes from one address, in this worker. Default 64. */
  readonly maxPendingPerSource: number;
  /** Time to finish a handshake. Default 10 s. */
  readonly timeoutMs: number;
  /** The same under pressure. Default 2 s. */
  readonly pressuredTimeoutMs: number;
  /** Share of maxPending (0..1) past which handshakes are under pressure. Default 0.5. */
  readonly pressureShare: number;
}

export const DEFAULT_HANDSHAKE_LIMITS: HandshakeLimits = Object.freeze({
  maxPending: 1024, maxPendingPerSource: 64, timeoutMs: 10_000, pressuredTimeoutMs: 2_000, pressureShare: 0.5,
});

/** Pure: may one more handshake from an address start, and with which timeout. */
export function handshakeDecision(o: { pending: number; fromSource: number; limits: HandshakeLimits }): { refuse: 'source' | 'global' } | { timeoutMs: number } {
  if (o.fromSource >= o.limits.maxPendingPerSource) return { refuse: 'source' };
  if (o.pending >= o.limits.maxPending) return { refuse: 'global' };
  const pressured = o.pending >= o.limits.pressureShare * o.limits.maxPending;
  return { timeoutMs: pressured ? o.limits.pressuredTimeoutMs : o.limits.timeoutMs };
}

interface Pending {
  readonly ip: string;
  readonly timer: NodeJS.Timeout;
}

export interface HandshakeLimiterDeps {
  /** Index 1: pending handshakes, all workers together. A private one when absent. */
  readonly shared?: Int32Array;
  readonly overload?: Pick<OverloadObserver, 'handshakeCapHit'>;
  /** A handshake ran out of time (the socket is destroyed next). */
  readonly onTimeout: (ip: string, timeoutMs: number) => void;
}

export class HandshakeLimiter {
  readonly #limits: HandshakeLimits;
  readonly #shared: Int32Array;
  readonly #deps: HandshakeLimiterDeps;
  readonly #pending = new Map<Socket, Pending>();
  readonly #bySource = new Map<string, number>();
  /** Sockets this limiter closed (refused or timed out): already counted, nothing more to say. */
  readonly #closedHere = new WeakSet<Socket>();

  constructor(limits: HandshakeLimits, deps: HandshakeLimiterDeps) {
    this.#limits = limits;
    this.#shared = deps.shared ?? new Int32Array(new SharedArrayBuffer(8));
    this.#deps = deps;
  }

  /** Pending handshakes in this worker. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Pending handshakes, all workers. */
  get pendingGlobally(): number {
    return Atomics.load(this.#shared, 1);
  }

  get limits(): HandshakeLimits {
    return this.#limits;
  }

  /** Watches a new connection until its handshake ends; destroys it now if a cap is reached. */
  begin(socket: Socket, ip: string): boolean {
    const fromSource = this.#bySource.get(ip) ?? 0;
    const pending = Atomics.add(this.#shared, 1, 1);
    const decision = handshakeDecision({ pending, fromSource, limits: this.#limits });
    if ('refuse' in decision) {
      Atomics.sub(this.#shared, 1, 1);
      this.#deps.overload?.handshakeCapHit(decision.refuse, ip);
      this.#closedHere.add(socket);
      socket.destroy();
      return false;
    }
    const timer = setTimeout(() => {
      if (!this.#pending.has(socket)) return;
      this.done(socket);
      this.#deps.onTimeout(ip, decision.timeoutMs);
      this.#closedHere.add(socket);
      socket.destroy();
    }, decision.timeoutMs);
    timer.unref();
    this.#pending.set(socket, { ip, timer });
    this.#bySource.set(ip, fromSource + 1);
    socket.once('close', () => this.done(socket));
    return true;
  }

  /** The handshake is over (done, failed, or the socket closed). Safe to repeat. */
  done(socket: Socket | undefined): void {
    const p = socket === undefined ? undefined : this.#pending.get(socket);
    if (p === undefined || socket === undefined) return;
    this.#pending.delete(socket);
    clearTimeout(p.timer);
    Atomics.sub(this.#shared, 1, 1);
    const left = (this.#bySource.get(p.ip) ?? 1) - 1;
    if (left <= 0) this.#bySource.delete(p.ip);
    else this.#bySource.set(p.ip, left);
  }

  /** True for a socket this limiter closed itself (its refusal or timeout is already counted). */
  closedHere(socket: Socket | undefined): boolean {
    return socket !== undefined && this.#closedHere.has(socket);
  }

  /** The client address a pending connection came from. */
  addressOf(socket: Socket | undefined): string | undefined {
    return socket === undefined ? undefined : this.#pending.get(socket)?.ip;
  }
}

/** The TCP socket under a server-side TLS socket (Node keeps it as `_parent`). */
export function rawSocketOf(tls: unknown): Socket | undefined {
  const parent = (tls as { _parent?: unknown } | null)?._parent;
  return typeof parent === 'object' && parent !== null ? parent as Socket : undefined;
}
