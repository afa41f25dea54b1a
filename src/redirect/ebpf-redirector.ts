// eBPF capture: connect4/6, sockops and getpeername4/6 on each enrolled pod's cgroup, sk_lookup
// in its network namespace (inbound, ebpf-inbound.ts), getsockopt on the
// agent's (bpf/redirect.bpf.c). Programs and maps are pinned per node; a restarted agent
// adopts pins that came from the same object file, so capture never lapses.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join, relative } from 'node:path';
import { Bpftool, parseCgroupShow, parseMapDump, type AttachType } from './bpftool.ts';
import {
  bytesFromJson, decodeCidrKey, decodeIpKey, decodePodKey, decodePodRecord, decodePortKey, decodeSettings,
  encodeCidrKey, encodeIpKey, encodePodKey, encodePodRecord, encodePortKey, encodeSettings, hexArgs, indexKey, MapNames, ONE,
} from './ebpf-maps.ts';
import {
  detachEverywhere, detachIfPresent, loadPins, objectBuildId, pinLayout, POD_PROGRAMS, progIds, readPinnedProgs, reclaimPins,
  type PinLayout, type PinnedProgs,
} from './ebpf-pins.ts';
import { redirectError, RedirectErrors } from './errors.ts';
import { ensureInboundLink, openInboundSocket, removeInboundLink } from './ebpf-inbound.ts';
import { podNetns } from './pod-netns.ts';
import { nodeMacs, PodNeighbourPins } from './pod-neighbours.ts';
import { validateTarget, type CaptureTarget, type RedirectorConfig } from './options.ts';
import { reclaimIptables } from './leftovers.ts';
import { probeEbpf } from './probe.ts';
import { silentLog, type CloseOptions, type RedirectLog, type Redirector, type RedirectorDeps } from './redirector.ts';
import { Serial } from './serial.ts';

export const DEFAULT_OBJECT = join(import.meta.dirname, '..', '..', 'bpf', 'build', 'redirect.bpf.o');

interface Running {
  readonly cgroup2: string;
  /** The node's cgroup tree: where leftovers of ours are looked for (options.ts nodeCgroupRoot). */
  readonly nodeRoot: string;
  readonly progs: PinnedProgs;
}

export class EbpfRedirector implements Redirector {
  readonly mode = 'ebpf' as const;
  readonly #cfg: RedirectorConfig;
  readonly #log: RedirectLog;
  readonly #deps: RedirectorDeps;
  readonly #bpftool: Bpftool;
  readonly #objectPath: string;
  readonly #layout: PinLayout;
  readonly #serial = new Serial();
  readonly #pods = new Map<string, CaptureTarget>();
  /** Network namespace path per pod, for its inbound sockets (found at enrolment). */
  readonly #netns = new Map<string, string>();
  /** Neighbour entries pinned in each pod's namespace at enrolment (pod-neighbours.ts), removed when it leaves. */
  readonly #pins: PodNeighbourPins;
  #running: Running | undefined;
  #started: Promise<void> | undefined;
  #closed: Promise<void> | undefined;

  constructor(cfg: RedirectorConfig, deps: RedirectorDeps = {}) {
    this.#cfg = cfg;
    this.#log = deps.log ?? silentLog;
    this.#pins = new PodNeighbourPins(cfg.inboundExemptSources, this.#log, () => nodeMacs(networkInterfaces()));
    this.#deps = deps;
    this.#bpftool = new Bpftool(deps.bpftool);
    this.#objectPath = deps.objectPath ?? DEFAULT_OBJECT;
    this.#layout = pinLayout(cfg.node);
  }

  start(): Promise<void> {
    if (this.#closed !== undefined) return Promise.reject(notRunning('start'));
    this.#started ??= this.#serial.run(() => this.#start()).catch((err: unknown) => {
      this.#started = undefined; // a retry adopts or reclaims whatever this attempt left
      throw err;
    });
    return this.#started;
  }

  async #start(): Promise<void> {
    const { cgroup2 } = await probeEbpf({ bpftool: this.#bpftool, objectPath: this.#objectPath });
    this.#checkAgentCgroup(cgroup2);
    const nodeRoot = this.#nodeRoot(cgroup2);
    // An iptables agent ran here before (--mode switched): its chains would capture first.
    await reclaimIptables(this.#deps, this.#log);
    const buildId = await objectBuildId(this.#objectPath);

    let progs = await readPinnedProgs(this.#bpftool, this.#layout);
    const previous = progs === undefined ? undefined : await this.#readSettings();
    if (progs !== undefined && previous?.buildId === buildId) {
      this.#log.info({ node: this.#cfg.node, pins: this.#layout.dir }, 'adopting the eBPF capture a previous agent left');
    } else {
      if (existsSync(this.#layout.dir)) {
        const { detached } = await reclaimPins(this.#bpftool, nodeRoot, this.#cfg.node);
        this.#log.warn({ node: this.#cfg.node, detached, reason: progs === undefined ? 'incomplete pins' : 'pins from another build' }, 'reclaimed earlier eBPF capture');
      }
      progs = await loadPins(this.#bpftool, this.#layout, this.#objectPath);
      this.#log.info({ node: this.#cfg.node, pins: this.#layout.dir, progs }, 'loaded eBPF capture programs');
    }
    this.#running = { cgroup2, nodeRoot, progs };
    // Exclusions before the settings: an all-zero settings entry is what keeps a fresh load inert.
    await this.#syncExclusions();
    await this.#bpftool.json(['map', 'update', 'pinned', this.#layout.map(MapNames.settings), 'key', ...hexArgs(indexKey(0)),
      'value', ...hexArgs(encodeSettings({
        agentAddress: this.#cfg.agentAddress, agentPort: this.#cfg.outboundPort, inboundSlots: this.#cfg.inboundSlots, buildId,
      }))]);
    await this.#attach(this.#cfg.agentCgroup, 'getsockopt', progs.getsockopt);
    await this.#adoptPods();
  }

  #checkAgentCgroup(cgroup2: string): void {
    const agent = this.#cfg.agentCgroup;
    if (!isUnder(cgroup2, agent) || !isDirectory(agent)) {
      throw redirectError(RedirectErrors.BAD_OPTION, `redirector option agentCgroup=${JSON.stringify(agent)}: not a cgroup directory under the cgroup2 mount ${cgroup2}`);
    }
    // getsockopt is answered only inside agentCgroup; warn early if this process is elsewhere.
    const own = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1];
    if (own !== undefined && !isUnder(agent, join(cgroup2, own))) {
      this.#log.warn({ agentCgroup: agent, ownCgroup: join(cgroup2, own) }, 'this process is not in agentCgroup: SO_ORIGINAL_DST will not be answered here');
    }
  }

  #nodeRoot(cgroup2: string): string {
    const root = this.#cfg.nodeCgroupRoot ?? cgroup2;
    if (!isUnder(cgroup2, root) || !isDirectory(root)) {
      throw redirectError(RedirectErrors.BAD_OPTION, `redirector option nodeCgroupRoot=${JSON.stringify(root)}: not a cgroup directory under the cgroup2 mount ${cgroup2}`);
    }
    return root;
  }

  async #readSettings(): Promise<ReturnType<typeof decodeSettings> | undefined> {
    const entry = await this.#bpftool.json(['map', 'lookup', 'pinned', this.#layout.map(MapNames.settings), 'key', ...hexArgs(indexKey(0))]);
    const [only] = parseMapDump([entry]);
    return only === undefined ? undefined : decodeSettings(bytesFromJson(only.value, 'weft_settings value'));
  }

  /** Makes the exclusion maps (outbound and inbound) hold exactly the configured keys. */
  async #syncExclusions(): Promise<void> {
    const port = (p: number): [string, Buffer] => [String(p), encodePortKey(p)];
    const sets: [string, Map<string, Buffer>, (raw: Buffer) => string][] = [
      [MapNames.skipPorts, new Map(this.#cfg.excludePorts.map(port)), (raw) => String(decodePortKey(raw))],
      [MapNames.skipCidrs, new Map(this.#cfg.excludeCidrs.map((c) => [c.text, encodeCidrKey(c)])), decodeCidrKey],
      [MapNames.inboundExempt, new Map(this.#cfg.inboundExemptSources.map((ip) => [ip, encodeIpKey(ip)])), decodeIpKey],
      [MapNames.inboundSkipPorts, new Map(this.#cfg.excludeInboundPorts.map(port)), (raw) => String(decodePortKey(raw))],
    ];
    const commands: string[][] = [];
    for (const [name, want, decode] of sets) {
      const path = this.#layout.map(name);
      // Current keys, decoded for comparison and kept raw for deletion.
      const have = new Map((await this.#dump(path)).map((e) => {
        const raw = bytesFromJson(e.key, `${name} key`);
        return [decode(raw), raw] as const;
      }));
      for (const [text, key] of want) if (!have.has(text)) commands.push(['map', 'update', 'pinned', path, 'key', ...hexArgs(key), 'value', ...hexArgs(ONE)]);
      for (const [text, raw] of have) if (!want.has(text)) commands.push(['map', 'delete', 'pinned', path, 'key', ...hexArgs(raw)]);
    }
    await this.#bpftool.batch(commands);
  }

  async #dump(mapPath: string): Promise<ReturnType<typeof parseMapDump>> {
    return parseMapDump(await this.#bpftool.json(['map', 'dump', 'pinned', mapPath]));
  }

  /** Rebuilds the pod list from the pinned pods map; pods whose cgroup is gone are dropped. */
  async #adoptPods(): Promise<void> {
    const podsMap = this.#layout.map(MapNames.pods);
    for (const entry of await this.#dump(podsMap)) {
      const keyBytes = bytesFromJson(entry.key, 'pod key');
      const ip = decodePodKey(keyBytes);
      const record = decodePodRecord(bytesFromJson(entry.value, 'pod record'));
      if (!isDirectory(record.cgroupPath)) {
        await this.#bpftool.json(['map', 'delete', 'pinned', podsMap, 'key', ...hexArgs(keyBytes)]);
        this.#log.info({ podId: record.podId, ip }, 'dropped a pod whose cgroup is gone');
        continue;
      }
      this.#pods.set(record.podId, { podId: record.podId, ip, cgroupPath: record.cgroupPath });
    }
    if (this.#pods.size > 0) this.#log.info({ pods: [...this.#pods.keys()] }, 'adopted enrolled pods');
  }

  enroll(target: CaptureTarget): Promise<void> {
    const pod = validateTarget(target);
    return this.#serial.run(async () => {
      const running = this.#requireRunning('enroll');
      if (!isUnder(running.cgroup2, pod.cgroupPath) || !isDirectory(pod.cgroupPath)) {
        throw redirectError(RedirectErrors.BAD_TARGET, `pod ${pod.podId}: cgroupPath ${JSON.stringify(pod.cgroupPath)} is not a cgroup directory under ${running.cgroup2}`);
      }
      const before = this.#pods.get(pod.podId);
      if (before !== undefined && (before.ip !== pod.ip || before.cgroupPath !== pod.cgroupPath)) await this.#remove(before);
      for (const other of this.#pods.values()) {
        // An IP now belongs to a new pod: the old one is gone (its cgroup may linger).
        if (other.podId !== pod.podId && other.ip === pod.ip) await this.#remove(other);
      }
      // Record first: an agent that dies right after attaching still knows this cgroup.
      await this.#bpftool.json(['map', 'update', 'pinned', this.#layout.map(MapNames.pods), 'key', ...hexArgs(encodePodKey(pod.ip)),
        'value', ...hexArgs(encodePodRecord(pod))]);
      for (const [prog, type] of POD_PROGRAMS) await this.#attach(pod.cgroupPath, type, running.progs[prog]);
      this.#pods.set(pod.podId, pod);
      if (this.#cfg.inboundSlots > 0) {
        const netns = podNetns(pod);
        // Before the link: from then on the exempt sources reach the pod around the agent.
        await this.#pins.pin(pod.podId, netns);
        await ensureInboundLink(this.#bpftool, this.#layout, pod, netns);
        this.#netns.set(pod.podId, netns);
      }
    });
  }

  openInboundSocket(podId: string, slot: number): Promise<number | undefined> {
    return this.#serial.run(async () => {
      this.#requireRunning('open an inbound socket');
      if (this.#cfg.inboundSlots === 0) return undefined;
      const pod = this.#pods.get(podId);
      if (pod === undefined) throw redirectError(RedirectErrors.BAD_TARGET, `cannot open an inbound socket for pod ${podId}: it is not enrolled`);
      if (!Number.isInteger(slot) || slot < 0 || slot >= this.#cfg.inboundSlots) {
        throw redirectError(RedirectErrors.BAD_OPTION, `inbound socket slot ${slot}: must be from 0 to ${this.#cfg.inboundSlots - 1} (one per proxy worker)`);
      }
      // Adopted pods have no namespace path yet; a pod's namespace may also have been replaced.
      let netns = this.#netns.get(podId);
      if (netns === undefined || !existsSync(netns)) {
        netns = podNetns(pod);
        this.#netns.set(podId, netns);
      }
      return Promise.resolve(openInboundSocket(this.#layout, pod, netns, slot));
    });
  }

  unenroll(podId: string): Promise<void> {
    return this.#serial.run(async () => {
      this.#requireRunning('unenroll');
      const pod = this.#pods.get(podId);
      if (pod !== undefined) await this.#remove(pod);
    });
  }

  enrolled(): readonly string[] {
    return Object.freeze([...this.#pods.keys()].sort());
  }

  async #remove(pod: CaptureTarget): Promise<void> {
    const running = this.#requireRunning('unenroll');
    // Inbound first: new connections go to the pod itself before its sockets here close.
    removeInboundLink(this.#layout, pod.podId);
    this.#netns.delete(pod.podId);
    await this.#pins.unpin(pod.podId);
    await this.#detachPod(pod.cgroupPath, running.progs);
    try {
      await this.#bpftool.json(['map', 'delete', 'pinned', this.#layout.map(MapNames.pods), 'key', ...hexArgs(encodePodKey(pod.ip))]);
    } catch {
      // already gone
    }
    this.#pods.delete(pod.podId);
  }

  async #attached(cgroup: string): Promise<ReturnType<typeof parseCgroupShow>> {
    return parseCgroupShow(await this.#bpftool.json(['cgroup', 'show', cgroup]));
  }

  async #attach(cgroup: string, type: AttachType, id: number): Promise<void> {
    if ((await this.#attached(cgroup)).some((a) => a.id === id && a.attachType === type)) return;
    await this.#bpftool.json(['cgroup', 'attach', cgroup, type, 'id', String(id), 'multi']);
  }

  /** Reverse attach order: the connect programs first, so nothing new is rewritten while the rest goes. */
  async #detachPod(cgroup: string, progs: PinnedProgs): Promise<void> {
    if (!existsSync(cgroup)) return; // removing a cgroup detaches its programs
    const attached = await this.#attached(cgroup);
    for (const [prog, type] of [...POD_PROGRAMS].reverse()) {
      if (attached.some((a) => a.id === progs[prog] && a.attachType === type)) await detachIfPresent(this.#bpftool, cgroup, type, progs[prog]);
    }
  }

  #requireRunning(what: string): Running {
    if (this.#closed !== undefined || this.#running === undefined) throw notRunning(what);
    return this.#running;
  }

  close(opts: CloseOptions = {}): Promise<void> {
    this.#closed ??= this.#serial.run(async () => {
      const running = this.#running;
      this.#running = undefined;
      if (running === undefined) return; // never started (or start failed before loading)
      if (opts.keepCapture === true) {
        this.#log.info({ node: this.#cfg.node, pods: this.#pods.size }, 'closing with capture kept in place');
        return;
      }
      for (const pod of this.#pods.values()) await this.#detachPod(pod.cgroupPath, running.progs);
      // Whatever else still holds our programs (the agent cgroup, one from before a restart, ...).
      await detachEverywhere(this.#bpftool, running.nodeRoot, new Set(progIds(running.progs)));
      await reclaimPins(this.#bpftool, running.nodeRoot, this.#cfg.node);
      this.#pods.clear();
      this.#log.info({ node: this.#cfg.node }, 'removed eBPF capture');
    });
    return this.#closed;
  }
}

function notRunning(what: string): Error {
  return redirectError(RedirectErrors.NOT_RUNNING, `cannot ${what}: the redirector is not running (start() it first; after close() make a new one)`);
}

function isUnder(parent: string, path: string): boolean {
  const rel = relative(parent, path);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'));
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
