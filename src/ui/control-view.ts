// The control-plane view, pure: every node the mesh knows with its agent's config stream
// (connected since, resources acknowledged of those desired, pushes in flight, refusals with
// the reason), and the manifest problems the control plane itself rejected.

export interface AgentStream {
  readonly node: string;
  readonly peer: string;
  /** Epoch ms. */
  readonly connectedAt: number;
  /** `type/name` -> version acknowledged. */
  readonly acked: ReadonlyMap<string, string>;
  readonly pendingPushes: number;
}

export interface ControlInputs {
  readonly nodes: readonly string[];
  readonly streams: readonly AgentStream[];
  /** What each node should hold: `type/name` -> version. */
  readonly desired: (node: string) => ReadonlyMap<string, string>;
  readonly rejected: (node: string) => readonly { readonly key: string; readonly version: string; readonly message: string }[];
  readonly manifestProblems: readonly string[];
  /** Agents whose metrics could not be read, by node name. */
  readonly unreachable: ReadonlySet<string>;
}

export type AgentState = 'ACK' | 'PENDING' | 'NACK' | 'DISCONNECTED';

export interface AgentRow {
  readonly node: string;
  readonly state: AgentState;
  readonly peer: string | undefined;
  readonly connectedAt: number | undefined;
  /** A short digest of the versions the agent acknowledged (equal digests: equal config). */
  readonly configVersion: string | undefined;
  readonly ackedResources: number;
  readonly desiredResources: number;
  readonly pendingPushes: number;
  readonly rejected: readonly { readonly key: string; readonly version: string; readonly message: string }[];
  readonly metricsReachable: boolean;
}

export interface ControlView {
  readonly agents: readonly AgentRow[];
  readonly manifestProblems: readonly string[];
}

/** FNV-1a over the sorted acked versions: stable, short, not a security boundary. */
export function configDigest(acked: ReadonlyMap<string, string>): string {
  let h = 0x811c9dc5;
  for (const [k, v] of [...acked].sort(([a], [b]) => a.localeCompare(b))) {
    for (const ch of `${k}=${v};`) {
      h ^= ch.charCodeAt(0);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h.toString(16).padStart(8, '0');
}

export function controlView(inputs: ControlInputs): ControlView {
  const names = [...new Set([...inputs.nodes, ...inputs.streams.map((s) => s.node)])].sort();
  const agents = names.map((node): AgentRow => {
    const stream = inputs.streams.filter((s) => s.node === node).at(-1);
    const desired = inputs.desired(node);
    const rejected = inputs.rejected(node);
    let acked = 0;
    if (stream !== undefined) for (const [k, v] of desired) if (stream.acked.get(k) === v) acked += 1;
    let state: AgentState;
    if (stream === undefined) state = 'DISCONNECTED';
    else if (rejected.length > 0) state = 'NACK';
    else if (stream.pendingPushes > 0 || acked < desired.size) state = 'PENDING';
    else state = 'ACK';
    return {
      node, state, peer: stream?.peer, connectedAt: stream?.connectedAt,
      configVersion: stream === undefined ? undefined : configDigest(stream.acked),
      ackedResources: acked, desiredResources: desired.size, pendingPushes: stream?.pendingPushes ?? 0, rejected,
      metricsReachable: !inputs.unreachable.has(node),
    };
  });
  return { agents, manifestProblems: inputs.manifestProblems };
}
