// Pins, in each captured pod's network namespace, the neighbour (ARP) entry of the hop by
// which the pod reaches the node's own addresses, to the node's MAC (nud permanent). A pod on
// the same bridge that takes one of those addresses as its source claims it over ARP; without
// the pin the captured pod learns the forger's MAC for its gateway and sends it everything
// meant for the node. In eBPF mode, where inbound capture exempts the node's addresses
// (kubelet probes, the agent's own connections), the forger would then receive the replies
// and complete a connection around the agent. In both modes the node itself (its probes, the
// agent's connections, the pod's whole way out) would lose the pod until the poisoned entry
// ages out: a forging pod could keep a STRICT pod failing its probes. With the entry pinned,
// replies to a forged node address go to the node, which resets them.

import { execFile } from 'node:child_process';
import type { NetworkInterfaceInfo } from 'node:os';
import { promisify } from 'node:util';
import { redirectError, RedirectErrors } from './errors.ts';
import type { RedirectLog } from './redirector.ts';

const run = promisify(execFile);

/** How the pod's namespace routes to one address (`ip -j route get`). */
export interface PodRoute {
  readonly to: string;
  readonly gateway?: string;
  readonly dev: string;
}

export interface NeighbourPin {
  readonly ip: string;
  readonly mac: string;
  readonly dev: string;
}

/** The node's IPv4 addresses and the MAC of the interface holding each (loopback left out). Pure. */
export function nodeMacs(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): Map<string, string> {
  const out = new Map<string, string>();
  for (const addrs of Object.values(interfaces)) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal && a.mac !== '00:00:00:00:00:00') out.set(a.address, a.mac);
  }
  return out;
}

/**
 * Which entries to pin: for each route, its next hop (the gateway, or the address itself when
 * on-link) when that hop is one of the node's own addresses. A hop that is not (a routed CNI's
 * link-local gateway, answered by proxy ARP on a point-to-point veth) has no other pod on its
 * link to claim it, and no MAC known here. Pure.
 */
export function neighbourPins(routes: readonly PodRoute[], macs: ReadonlyMap<string, string>): NeighbourPin[] {
  const out = new Map<string, NeighbourPin>();
  for (const r of routes) {
    const hop = r.gateway ?? r.to;
    const mac = macs.get(hop);
    if (mac !== undefined) out.set(`${hop} ${r.dev}`, { ip: hop, mac, dev: r.dev });
  }
  return [...out.values()].sort((a, b) => a.ip.localeCompare(b.ip) || a.dev.localeCompare(b.dev));
}

/** Parses `ip -4 -j route get ADDR`. */
export function parseRouteGet(to: string, json: string): PodRoute {
  const [first] = JSON.parse(json) as { gateway?: unknown; dev?: unknown }[];
  if (first === undefined || typeof first.dev !== 'string') throw new Error(`no route to ${to}: ${json.trim()}`);
  return typeof first.gateway === 'string' ? { to, gateway: first.gateway, dev: first.dev } : { to, dev: first.dev };
}

async function ipIn(netns: string, args: readonly string[]): Promise<string> {
  return (await run('nsenter', [`--net=${netns}`, 'ip', ...args], { timeout: 10_000 })).stdout;
}

/** Pins the entries for `exempt` in the pod's namespace; resolves what it pinned. Throws NEIGHBOUR_PIN_FAILED. */
export async function pinNeighbours(podId: string, netns: string, exempt: readonly string[], macs: ReadonlyMap<string, string>): Promise<NeighbourPin[]> {
  try {
    const routes: PodRoute[] = [];
    for (const ip of exempt) routes.push(parseRouteGet(ip, await ipIn(netns, ['-4', '-j', 'route', 'get', ip])));
    const pins = neighbourPins(routes, macs);
    for (const p of pins) await ipIn(netns, ['-4', 'neigh', 'replace', p.ip, 'lladdr', p.mac, 'dev', p.dev, 'nud', 'permanent']);
    return pins;
  } catch (err: unknown) {
    throw redirectError(RedirectErrors.NEIGHBOUR_PIN_FAILED, `pod ${podId}: cannot pin the node's neighbour entries in its network namespace ${netns} (needs nsenter and ip): ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

/** Removes pinned entries (the pod leaves capture); the kernel learns them again. Best effort: the namespace may be gone. */
export async function unpinNeighbours(netns: string, pins: readonly NeighbourPin[]): Promise<void> {
  for (const p of pins) {
    try {
      await ipIn(netns, ['-4', 'neigh', 'del', p.ip, 'dev', p.dev]);
    } catch {
      // the namespace or the entry is gone
    }
  }
}

/**
 * The entries pinned for each enrolled pod (one redirector's), so that they go when the pod
 * leaves capture. Pinning is best effort: a pod whose entries cannot be pinned is still
 * captured (refusing it would leave it open), and the failure is logged.
 */
export class PodNeighbourPins {
  readonly #exempt: readonly string[];
  readonly #log: RedirectLog;
  readonly #macs: () => ReadonlyMap<string, string>;
  readonly #pins = new Map<string, { readonly netns: string; readonly pins: readonly NeighbourPin[] }>();

  constructor(exempt: readonly string[], log: RedirectLog, macs: () => ReadonlyMap<string, string>) {
    this.#exempt = exempt;
    this.#log = log;
    this.#macs = macs;
  }

  /** Whether the pod's entries are pinned (in the namespace `netns`, when given). */
  has(podId: string, netns?: string): boolean {
    const p = this.#pins.get(podId);
    return p !== undefined && (netns === undefined || p.netns === netns);
  }

  async pin(podId: string, netns: string): Promise<void> {
    if (this.#exempt.length === 0) return;
    try {
      this.#pins.set(podId, { netns, pins: await pinNeighbours(podId, netns, this.#exempt, this.#macs()) });
    } catch (err: unknown) {
      this.#log.warn({ podId, err }, 'neighbour entries not pinned: a pod on the same bridge could forge the node\'s address and cut this pod off from its node');
    }
  }

  async unpin(podId: string): Promise<void> {
    const pinned = this.#pins.get(podId);
    this.#pins.delete(podId);
    if (pinned !== undefined) await unpinNeighbours(pinned.netns, pinned.pins);
  }
}
