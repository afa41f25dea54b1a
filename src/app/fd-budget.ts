// How the agent shares its file descriptors (RLIMIT_NOFILE, raised to the hard limit at start):
// a reserve for what is not a proxied connection (the control-plane connection, metrics, admin
// and readiness endpoints, logs, BPF maps, tunnel sessions), a cap on pending TLS handshakes,
// the rest for connections; one source may hold a quarter of that at most, and never more than
// 16,384 (about 8,000 outbound connections: memory runs out before descriptors on a node
// with a million of them), unless the operator names its own per-source cap (`weft agent
// --max-fds-per-source`, never more than all connections may hold). Pure, table-tested.

export interface FdBudget {
  /** RLIMIT_NOFILE the budget was made from. */
  readonly limit: number;
  /** Never used by connections or handshakes. */
  readonly reserve: number;
  /** Descriptors all connections of all workers may hold. */
  readonly connectionFds: number;
  /** Descriptors one source's connections may hold, all workers together. */
  readonly perSourceFds: number;
  /** Pending tunnel handshakes, all workers together. */
  readonly maxPendingHandshakes: number;
  /** Pending tunnel handshakes from one address, all workers together. */
  readonly maxPendingHandshakesPerSource: number;
}

export const MAX_PER_SOURCE_FDS = 16_384;

/** `perSource`: the operator's per-source cap (descriptors, all workers), instead of the default rule. */
export function fdBudget(limit: number, perSource?: number): FdBudget {
  const n = Math.max(0, Math.floor(limit));
  const reserve = Math.min(n, Math.max(512, Math.ceil(n * 0.05)));
  const free = n - reserve;
  const maxPendingHandshakes = Math.max(Math.min(16, free), Math.min(1024, Math.floor(free * 0.05)));
  const connectionFds = Math.max(0, free - maxPendingHandshakes);
  const perSourceFds = perSource === undefined
    ? Math.min(MAX_PER_SOURCE_FDS, Math.max(Math.min(64, connectionFds), Math.floor(connectionFds / 4)))
    : Math.min(connectionFds, Math.max(0, Math.floor(perSource)));
  const maxPendingHandshakesPerSource = Math.max(Math.min(4, maxPendingHandshakes), Math.min(64, Math.floor(maxPendingHandshakes / 8)));
  return Object.freeze({ limit: n, reserve, connectionFds, perSourceFds, maxPendingHandshakes, maxPendingHandshakesPerSource });
}

/** One worker's share of a per-source cap (SO_REUSEPORT spreads a source's connections over the workers). */
export function perWorker(total: number, workers: number): number {
  return Math.max(1, Math.ceil(total / Math.max(1, workers)));
}

/** Counters the proxy workers of one agent share: [0] descriptors held by connections, [1] pending handshakes, [2] sources held back (fair sharing). */
export function sharedProxyCounters(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
}
