// Endpoint choice: least loaded of two weighted-random picks ("power of two choices"), over a
// snapshot of load and ejections. Pure: the random source is injected, so tests use tables.

/** What the picker needs to know about an endpoint. */
export interface Pickable {
  readonly ip: string;
  readonly port: number;
  /** Relative capacity; 0 takes no traffic. */
  readonly weight: number;
}

export interface LoadSnapshot {
  /** Connections open or opening to the endpoint `ip:port`. */
  active(key: string): number;
  /** True while outlier detection keeps the endpoint out. */
  ejected(key: string): boolean;
}

/** A number in [0, 1), like Math.random. */
export type RandomSource = () => number;

export function endpointKey(e: { readonly ip: string; readonly port: number }): string {
  return `${e.ip}:${e.port}`;
}

function weightedDraw<E extends Pickable>(from: readonly E[], total: number, r: number, skip: E | undefined): E {
  let x = r * total;
  let last: E | undefined;
  for (const e of from) {
    if (e === skip) continue;
    last = e;
    x -= e.weight;
    if (x < 0) return e;
  }
  // Only reached through rounding at the top end.
  return last as E;
}

/**
 * Picks an endpoint, or undefined when none can take traffic. Endpoints in `exclude` (keys
 * already tried for this connection) and weight <= 0 are never picked; ejected endpoints are
 * skipped unless every remaining one is ejected (then trying beats refusing).
 */
export function pickEndpoint<E extends Pickable>(
  endpoints: readonly E[],
  load: LoadSnapshot,
  random: RandomSource,
  exclude?: ReadonlySet<string>,
): E | undefined {
  const usable = endpoints.filter((e) => e.weight > 0 && !(exclude?.has(endpointKey(e)) ?? false));
  if (usable.length <= 1) return usable[0];
  const healthy = usable.filter((e) => !load.ejected(endpointKey(e)));
  const pool = healthy.length > 0 ? healthy : usable;
  if (pool.length === 1) return pool[0];

  let total = 0;
  for (const e of pool) total += e.weight;
  const a = weightedDraw(pool, total, random(), undefined);
  const b = weightedDraw(pool, total - a.weight, random(), a);
  // Load per unit of weight; +1 counts the connection being placed. Ties go to the first draw.
  const score = (e: E): number => (load.active(endpointKey(e)) + 1) / e.weight;
  return score(b) < score(a) ? b : a;
}
