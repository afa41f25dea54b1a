// Connection accounting on a simulated mesh, for the overload and peer-death tests: an
// agent's pid and sockets (ss in its node's namespace), and whether its opened - closed
// counters agree with the connections its sockets say are open.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { SimStatus } from '../support/sim.ts';
import { agentMetrics, eventually, inNetns, node, sample } from './mesh-support.ts';

export function agentPid(cluster: string, nodeName: string): number {
  const state = JSON.parse(readFileSync(`/run/weft/sim/${cluster}/state.json`, 'utf8')) as { mesh_processes: Record<string, number> };
  const pid = state.mesh_processes[`agent/${nodeName}`];
  assert.ok(typeof pid === 'number', `agent/${nodeName} pid`);
  return pid;
}

export interface SocketLine {
  readonly state: string;
  readonly local: string;
  readonly peer: string;
  readonly pid: number | undefined;
}

export async function sockets(s: SimStatus, nodeName: string): Promise<SocketLine[]> {
  const r = await inNetns(node(s, nodeName).netns, ['ss', '-tanpH']);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => {
    const f = l.trim().split(/\s+/);
    const pid = /pid=(\d+)/.exec(l)?.[1];
    return { state: f[0] ?? '', local: f[3] ?? '', peer: f[4] ?? '', pid: pid === undefined ? undefined : Number(pid) };
  });
}

const port = (addr: string): number => Number(addr.slice(addr.lastIndexOf(':') + 1));
const host = (addr: string): string => addr.slice(0, addr.lastIndexOf(':'));

/**
 * The agent's open connections as its sockets show them (the tests' traffic is all cross-node):
 * as source, the client sockets it accepted on 15001; as destination, its sockets to pods, less
 * the HTTP layer's (weft_http_sockets): HTTP connections are counted per request
 * (istio_requests_total), not in istio_tcp_connections_*, and a tunnel stream carrying HTTP
 * may use several pod connections, one per request in flight.
 */
export async function realOpen(s: SimStatus, cluster: string, nodeName: string): Promise<{ source: number; destination: number }> {
  const pid = agentPid(cluster, nodeName);
  const [all, text] = await Promise.all([sockets(s, nodeName), agentMetrics(s, nodeName)]);
  const mine = all.filter((x) => x.pid === pid && x.state !== 'LISTEN');
  const podIps = new Set(s.pods.filter((p) => p.node === nodeName).map((p) => p.ip));
  return {
    source: mine.filter((x) => port(x.local) === 15001).length,
    destination: mine.filter((x) => podIps.has(host(x.peer)) && port(x.local) !== 15001).length - sample(text, 'weft_http_sockets'),
  };
}

export async function openedMinusClosed(s: SimStatus, nodeName: string): Promise<{ source: number; destination: number }> {
  const text = await agentMetrics(s, nodeName);
  const open = (reporter: string) => sample(text, 'istio_tcp_connections_opened_total', { reporter }) - sample(text, 'istio_tcp_connections_closed_total', { reporter });
  return { source: open('source'), destination: open('destination') };
}

/** After a fault: on every agent, opened - closed equals what its sockets say is open (waits for them to agree). */
export async function assertAccounting(s: SimStatus, cluster: string, what: string): Promise<void> {
  for (const n of s.nodes) {
    let last: unknown;
    const agreed = await eventually(async () => {
      const [counted, real] = await Promise.all([openedMinusClosed(s, n.name), realOpen(s, cluster, n.name)]);
      last = { counted, real };
      return counted.source === real.source && counted.destination === real.destination ? counted : undefined;
    }, 20_000, 500);
    assert.ok(agreed !== undefined, `${what}: ${n.name}'s opened - closed disagrees with its sockets: ${JSON.stringify(last)}`);
  }
}
