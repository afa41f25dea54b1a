// iptables mode as pure text: the nat-table rules that send enrolled pods' outbound TCP
// to the agent (DNAT, so conntrack answers SO_ORIGINAL_DST), and the parsing of
// `iptables-save -t nat` that tells what is installed. Everything weft adds lives in
// WEFT-* chains, plus one jump from PREROUTING.

import type { RedirectorConfig } from './options.ts';

export const PREROUTING_CHAIN = 'WEFT-PREROUTING';
export const CAPTURE_CHAIN = 'WEFT-CAPTURE';
export const INBOUND_CHAIN = 'WEFT-INBOUND';
const INBOUND_COMMENT = 'weft-inbound=';
const JUMP = `-j ${PREROUTING_CHAIN}`;
const POD_COMMENT = 'weft-pod=';
/** multiport takes at most 15 ports per rule. */
const MULTIPORT_MAX = 15;

export interface IptablesPod {
  readonly podId: string;
  readonly ip: string;
}

export interface NatState {
  /** WEFT-* chains that exist. */
  readonly chains: readonly string[];
  /** Rules outside WEFT-* chains that jump into one, as printed (`-A PREROUTING -j WEFT-...`). */
  readonly jumps: readonly string[];
  /** Pods found in WEFT-PREROUTING, from each rule's comment. */
  readonly pods: readonly IptablesPod[];
}

/** Splits one iptables-save rule into arguments, honouring "double quotes". */
export function splitRule(line: string): string[] {
  const args: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) {
    args.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]);
  }
  return args;
}

export function parseNatSave(text: string): NatState {
  const chains: string[] = [];
  const jumps: string[] = [];
  const pods: IptablesPod[] = [];
  let inNat = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      inNat = line === '*nat';
      continue;
    }
    if (!inNat) continue;
    if (line.startsWith(':WEFT-')) {
      chains.push(line.slice(1).split(' ')[0]);
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const args = splitRule(line);
    const chain = args[1];
    const target = args[args.indexOf('-j') + 1];
    if (!chain.startsWith('WEFT-') && args.includes('-j') && target.startsWith('WEFT-')) jumps.push(line);
    if (chain === PREROUTING_CHAIN) {
      const comment = args[args.indexOf('--comment') + 1];
      const source = args[args.indexOf('-s') + 1];
      if (args.includes('--comment') && comment.startsWith(POD_COMMENT) && args.includes('-s')) {
        pods.push({ podId: comment.slice(POD_COMMENT.length), ip: source.replace(/\/32$/, '') });
      }
    }
  }
  return { chains, jumps, pods };
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * An `iptables-restore --noflush` script that rewrites the WEFT-* chains in one
 * transaction (declaring a chain flushes it) and adds the PREROUTING jump if missing.
 * Outbound: pods are matched by source address (and the bridge, when known). Inbound (when
 * on): TCP to an enrolled pod's address that was not captured outbound first goes to the
 * agent's inbound port, whether it was routed in from another node or bridged from a pod on
 * this one. The agent's own connections, and everything else the node itself sends (kubelet
 * probes), start in the node's OUTPUT path and never meet these rules.
 */
export function buildNatRules(cfg: RedirectorConfig, pods: readonly IptablesPod[], state: NatState): string {
  const lines = ['*nat', `:${PREROUTING_CHAIN} - [0:0]`, `:${CAPTURE_CHAIN} - [0:0]`, `:${INBOUND_CHAIN} - [0:0]`];
  const inIf = cfg.podInterface === undefined ? '' : ` -i ${cfg.podInterface}`;
  const sorted = [...pods].sort((a, b) => a.podId.localeCompare(b.podId));
  for (const pod of sorted) {
    lines.push(`-A ${PREROUTING_CHAIN} -s ${pod.ip}/32${inIf} -p tcp -m comment --comment "${POD_COMMENT}${pod.podId}" -j ${CAPTURE_CHAIN}`);
  }
  // After every outbound rule: a mesh pod's own connection is captured as outbound first.
  if (cfg.inboundSlots > 0) {
    for (const pod of sorted) {
      lines.push(`-A ${PREROUTING_CHAIN} -d ${pod.ip}/32 -p tcp -m comment --comment "${INBOUND_COMMENT}${pod.podId}" -j ${INBOUND_CHAIN}`);
    }
    // No source is exempt here: the node's own connections (kubelet probes, the agent's) leave
    // through OUTPUT and never meet PREROUTING, so a node address seen in PREROUTING was forged
    // by a pod (bridged, or routed in). inboundExemptSources only pins neighbour entries here.
    for (const group of chunks(cfg.excludeInboundPorts, MULTIPORT_MAX)) {
      lines.push(`-A ${INBOUND_CHAIN} -p tcp -m multiport --dports ${group.join(',')} -j RETURN`);
    }
    lines.push(`-A ${INBOUND_CHAIN} -p tcp -j REDIRECT --to-ports ${cfg.inboundPort}`);
  }
  for (const cidr of cfg.excludeCidrs) lines.push(`-A ${CAPTURE_CHAIN} -d ${cidr.text} -j RETURN`);
  for (const group of chunks(cfg.excludePorts, MULTIPORT_MAX)) {
    lines.push(`-A ${CAPTURE_CHAIN} -p tcp -m multiport --dports ${group.join(',')} -j RETURN`);
  }
  // DNAT to the agent's own address rather than REDIRECT (the incoming interface's address):
  // on a real node pods arrive on per-pod veths whose address is not the one the agent listens on.
  lines.push(`-A ${CAPTURE_CHAIN} -p tcp -j DNAT --to-destination ${cfg.agentAddress}:${cfg.outboundPort}`);
  // First in PREROUTING, so a DNAT installed later (kube-proxy) cannot hide the original destination.
  if (!state.jumps.some((j) => j === `-A PREROUTING ${JUMP}`)) lines.push(`-I PREROUTING 1 ${JUMP}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** An `iptables-restore --noflush` script that removes every jump into WEFT-* and every WEFT-* chain; undefined when nothing is installed. */
export function buildNatRemoval(state: NatState): string | undefined {
  if (state.chains.length === 0 && state.jumps.length === 0) return undefined;
  const lines = ['*nat'];
  for (const jump of state.jumps) lines.push(`-D${jump.slice(2)}`);
  for (const chain of state.chains) lines.push(`-F ${chain}`);
  for (const chain of state.chains) lines.push(`-X ${chain}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}
