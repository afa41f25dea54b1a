// iptables capture, for kernels without the eBPF features: REDIRECT enrolled pods' TCP,
// as it arrives from the pod bridge, to the agent's outbound port. The agent runs in the
// node's network namespace, so these rules live in that namespace's nat table, and
// conntrack answers SO_ORIGINAL_DST exactly as the eBPF getsockopt program would. With
// inbound capture on, each pod's neighbour entries for the node are pinned as in eBPF mode
// (pod-neighbours.ts), so a pod forging the node's address cannot cut it off from its node.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { redirectError, RedirectErrors } from './errors.ts';
import { buildNatRules, type IptablesPod, type NatState } from './iptables-rules.ts';
import { readNatState, removeNatChains, restoreNat, type IptablesCommands } from './iptables-nat.ts';
import { reclaimEbpf } from './leftovers.ts';
import { pinLayout } from './ebpf-pins.ts';
import { nodeMacs, PodNeighbourPins } from './pod-neighbours.ts';
import { podNetns } from './pod-netns.ts';
import { validateTarget, type CaptureTarget, type RedirectorConfig } from './options.ts';
import { silentLog, type CloseOptions, type RedirectLog, type Redirector, type RedirectorDeps } from './redirector.ts';
import { Serial } from './serial.ts';

// Same-node pod-to-pod traffic is bridged, not routed: iptables sees it only when the
// bridge hands frames to netfilter. Per network namespace since Linux 5.3.
export const BRIDGE_NF_CALL_IPTABLES = '/proc/sys/net/bridge/bridge-nf-call-iptables';

export class IptablesRedirector implements Redirector {
  readonly mode = 'iptables' as const;
  readonly #cfg: RedirectorConfig;
  readonly #log: RedirectLog;
  readonly #cmds: IptablesCommands;
  readonly #deps: RedirectorDeps;
  readonly #serial = new Serial();
  readonly #pods = new Map<string, IptablesPod>();
  readonly #pins: PodNeighbourPins;
  #running = false;
  #started: Promise<void> | undefined;
  #closed: Promise<void> | undefined;

  constructor(cfg: RedirectorConfig, deps: RedirectorDeps = {}) {
    this.#cfg = cfg;
    this.#log = deps.log ?? silentLog;
    this.#deps = deps;
    this.#pins = new PodNeighbourPins(cfg.inboundExemptSources, this.#log, () => nodeMacs(networkInterfaces()));
    this.#cmds = { save: deps.iptablesSave ?? 'iptables-save', restore: deps.iptablesRestore ?? 'iptables-restore' };
  }

  start(): Promise<void> {
    if (this.#closed !== undefined) return Promise.reject(notRunning('start'));
    this.#started ??= this.#serial.run(async () => {
      // An eBPF agent for this node ran before (--mode switched): its capture must go.
      if (existsSync(pinLayout(this.#cfg.node).dir)) await reclaimEbpf(this.#cfg.node, this.#deps, this.#log, this.#cfg.nodeCgroupRoot);
      const state = await readNatState(this.#cmds);
      for (const pod of state.pods) this.#pods.set(pod.podId, pod);
      if (state.pods.length > 0) this.#log.info({ pods: state.pods.map((p) => p.podId) }, 'adopted enrolled pods from existing WEFT chains');
      this.#enableBridgeNetfilter();
      await this.#apply(this.#pods, state);
      this.#running = true;
    }).catch((err: unknown) => {
      this.#started = undefined; // nothing half-done: the restore is one transaction
      throw err;
    });
    return this.#started;
  }

  #enableBridgeNetfilter(): void {
    if (!existsSync(BRIDGE_NF_CALL_IPTABLES)) {
      this.#log.warn({ path: BRIDGE_NF_CALL_IPTABLES }, 'no bridge netfilter in this kernel: connections between pods on the same bridge will not be captured');
      return;
    }
    if (readFileSync(BRIDGE_NF_CALL_IPTABLES, 'utf8').trim() === '1') return;
    try {
      writeFileSync(BRIDGE_NF_CALL_IPTABLES, '1\n');
      this.#log.info({ path: BRIDGE_NF_CALL_IPTABLES }, 'enabled bridge netfilter so same-node pod-to-pod connections are captured');
    } catch (err: unknown) {
      throw redirectError(RedirectErrors.IPTABLES_FAILED, `cannot enable ${BRIDGE_NF_CALL_IPTABLES} (same-node pod-to-pod capture needs it): ${err instanceof Error ? err.message : String(err)}`, err);
    }
  }

  async #apply(pods: ReadonlyMap<string, IptablesPod>, state?: NatState): Promise<void> {
    await restoreNat(this.#cmds, buildNatRules(this.#cfg, [...pods.values()], state ?? (await readNatState(this.#cmds))));
  }

  // The pod set changes only once the rules are in: enrolled() never reports what the node
  // does not do yet (a pod reported released must not be captured any more).
  enroll(target: CaptureTarget): Promise<void> {
    const pod = validateTarget(target);
    return this.#serial.run(async () => {
      this.#requireRunning('enroll');
      if (this.#pods.get(pod.podId)?.ip !== pod.ip) {
        const next = new Map([...this.#pods].filter(([id, other]) => id === pod.podId || other.ip !== pod.ip));
        next.set(pod.podId, { podId: pod.podId, ip: pod.ip });
        await this.#apply(next);
        await this.#unpinGone(next);
        this.#commit(next);
      }
      if (this.#cfg.inboundSlots === 0) return;
      // After the rules: nothing is exempt here, so capture needs no pin first, and a pod whose
      // namespace cannot be found (iptables mode does not wait for its cgroup) is captured all
      // the same.
      let netns: string;
      try {
        netns = podNetns(pod);
      } catch (err: unknown) {
        this.#log.warn({ podId: pod.podId, err }, 'neighbour entries not pinned (the pod\'s network namespace is unknown): a pod on the same bridge could forge the node\'s address and cut this pod off from its node');
        return;
      }
      if (!this.#pins.has(pod.podId, netns)) await this.#pins.pin(pod.podId, netns);
    });
  }

  unenroll(podId: string): Promise<void> {
    return this.#serial.run(async () => {
      this.#requireRunning('unenroll');
      if (!this.#pods.has(podId)) return;
      const next = new Map(this.#pods);
      next.delete(podId);
      await this.#apply(next);
      await this.#unpinGone(next);
      this.#commit(next);
    });
  }

  /** Unpins the pods that are not in `next` (released, or their address taken by a new pod). */
  async #unpinGone(next: ReadonlyMap<string, IptablesPod>): Promise<void> {
    for (const podId of this.#pods.keys()) if (!next.has(podId)) await this.#pins.unpin(podId);
  }

  #commit(next: ReadonlyMap<string, IptablesPod>): void {
    this.#pods.clear();
    for (const [id, p] of next) this.#pods.set(id, p);
  }

  /** None: inbound connections are redirected to the agent's inbound port instead. */
  openInboundSocket(): Promise<number | undefined> {
    return Promise.resolve(undefined);
  }

  enrolled(): readonly string[] {
    return Object.freeze([...this.#pods.keys()].sort());
  }

  #requireRunning(what: string): void {
    if (!this.#running || this.#closed !== undefined) throw notRunning(what);
  }

  close(opts: CloseOptions = {}): Promise<void> {
    this.#closed ??= this.#serial.run(async () => {
      const wasRunning = this.#running;
      this.#running = false;
      if (!wasRunning) return;
      if (opts.keepCapture === true) {
        this.#log.info({ pods: this.#pods.size }, 'closing with WEFT chains kept in place');
        return;
      }
      await removeNatChains(this.#cmds);
      this.#pods.clear();
      this.#log.info({}, 'removed WEFT chains');
    });
    return this.#closed;
  }
}

function notRunning(what: string): Error {
  return redirectError(RedirectErrors.NOT_RUNNING, `cannot ${what}: the redirector is not running (start() it first; after close() make a new one)`);
}
