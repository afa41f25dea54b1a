// A path is one way for the client's traffic to reach the server: direct, through HAProxy,
// or through weft. Scenarios only see a Route, so adding a path touches nothing else.

import type { Placement } from '../../src/sim/processes.ts';
import type { ServiceKind, Variant } from '../cluster.ts';
import type { PathName } from '../options.ts';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface Route {
  /** Where the load generator runs (a client pod). */
  readonly client: Placement;
  /** Where the client connects to reach the server's `service` port. */
  target(service: ServiceKind): Endpoint;
  /** The pod whose listeners finally receive the connections. */
  readonly server: Placement;
  /**
   * Root PIDs of the proxy processes this route goes through (their whole process trees are
   * measured). Empty for direct. Read when a measurement starts, so a restarted proxy counts.
   */
  proxyPids(): readonly number[];
  /** How many proxies (nodes) the route crosses: resources are also reported per proxy. */
  readonly proxyCount: number;
}

export interface BenchPath {
  readonly name: PathName;
  /** Why the path cannot be measured (shown in the table), or undefined when it can. */
  readonly unavailable: string | undefined;
  route(variant: Variant): Route;
  /** Stops what the path started; safe to call twice. */
  close(): Promise<void>;
}

/** A path that is listed in the report but never run. */
export function unavailablePath(name: PathName, why: string): BenchPath {
  return {
    name, unavailable: why,
    route: () => { throw new Error(`path ${name} is not available: ${why}`); },
    close: () => Promise.resolve(),
  };
}
