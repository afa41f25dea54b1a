// Builds and removes the cluster's network: one namespace per node and per pod, plus an
// underlay namespace whose bridge joins the nodes. Commands go through `ip -batch` so a
// 100-pod cluster costs a few dozen process spawns, not hundreds.

import { run, forEachLimited } from '../core/exec.ts';
import { SimErrors } from './errors.ts';
import type { ClusterPlan } from './plan.ts';
import { CONTROL_IP } from './addresses.ts';

const UNDERLAY_BRIDGE = 'ul';
const NODE_UPLINK = 'ul0';
const POD_BRIDGE = 'br0';
const PREFIX_LEN = 24;

async function ipBatch(netns: string | undefined, lines: readonly string[]): Promise<void> {
  const args = netns === undefined ? ['-batch', '-'] : ['-n', netns, '-batch', '-'];
  await run('ip', args, { input: `${lines.join('\n')}\n`, code: SimErrors.COMMAND_FAILED });
}

async function sysctl(netns: string, key: string, value: string): Promise<void> {
  await run('nsenter', [`--net=/run/netns/${netns}`, '--', 'sysctl', '-qw', `${key}=${value}`], { code: SimErrors.COMMAND_FAILED });
}

export async function buildNetwork(plan: ClusterPlan): Promise<void> {
  await ipBatch(undefined, [plan.underlayNetns, ...plan.nodes.map((n) => n.netns), ...plan.pods.map((p) => p.netns)].map((ns) => `netns add ${ns}`));

  const underlay = ['link set lo up', `link add ${UNDERLAY_BRIDGE} type bridge`, `addr add ${CONTROL_IP}/${PREFIX_LEN} dev ${UNDERLAY_BRIDGE}`, `link set ${UNDERLAY_BRIDGE} up`];
  for (const n of plan.nodes) {
    underlay.push(`link add n${n.index} type veth peer name ${NODE_UPLINK} netns ${n.netns}`, `link set n${n.index} master ${UNDERLAY_BRIDGE}`, `link set n${n.index} up`);
  }
  await ipBatch(plan.underlayNetns, underlay);

  await forEachLimited(plan.nodes, 4, async (n) => {
    const lines = [
      'link set lo up',
      `link add ${POD_BRIDGE} type bridge`, `addr add ${n.bridgeIp}/${PREFIX_LEN} dev ${POD_BRIDGE}`, `link set ${POD_BRIDGE} up`,
      `addr add ${n.ip}/${PREFIX_LEN} dev ${NODE_UPLINK}`, `link set ${NODE_UPLINK} up`,
    ];
    for (const other of plan.nodes) {
      if (other !== n) lines.push(`route add ${other.podCidr} via ${other.ip}`);
    }
    for (const p of plan.pods) {
      if (p.node !== n.name) continue;
      lines.push(`link add ${p.hostVeth} type veth peer name eth0 netns ${p.netns}`, `link set ${p.hostVeth} master ${POD_BRIDGE}`, `link set ${p.hostVeth} up`);
    }
    await ipBatch(n.netns, lines);
    await sysctl(n.netns, 'net.ipv4.ip_forward', '1');
  });

  const gateway = new Map(plan.nodes.map((n) => [n.name, n.bridgeIp]));
  await forEachLimited(plan.pods, 8, async (p) => {
    await ipBatch(p.netns, [
      'link set lo up', `addr add ${p.ip}/${PREFIX_LEN} dev eth0`, 'link set eth0 up', `route add default via ${gateway.get(p.node)}`,
    ]);
  });
}

/** Every network namespace whose name starts with `prefix` (e.g. `weft-` or `weft-demo-`). */
export async function listNetns(prefix: string): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list'], { code: SimErrors.COMMAND_FAILED });
  return stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(prefix));
}

/** PIDs of processes whose network namespace is `netns`. */
export async function netnsPids(netns: string): Promise<number[]> {
  const { stdout } = await run('ip', ['netns', 'pids', netns], { code: SimErrors.COMMAND_FAILED, okStatus: [0, 1] });
  return stdout.split('\n').filter((l) => l.trim() !== '').map(Number).filter((n) => Number.isInteger(n) && n > 1);
}

export async function deleteNetns(names: readonly string[]): Promise<void> {
  if (names.length === 0) return;
  // `-force` keeps going past a namespace that is already gone.
  await run('ip', ['-force', '-batch', '-'], { input: `${names.map((n) => `netns del ${n}`).join('\n')}\n`, code: SimErrors.COMMAND_FAILED, okStatus: [0, 1] });
}
