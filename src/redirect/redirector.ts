// The contract both capture modes implement. The agent enrols the pods of its node;
// their outbound TCP then reaches the agent's outbound port, where
// originalDestination() (original-dst.ts) tells where each connection was going.

import type { CaptureTarget } from './options.ts';

export interface CloseOptions {
  /**
   * Leave capture in place (pins, attachments, chains): pods' connections keep going to
   * the agent's port and fail while no agent listens, instead of bypassing the mesh.
   * A restarted agent's start() adopts it.
   */
  readonly keepCapture?: boolean;
}

export interface Redirector {
  /** 'ebpf' or 'iptables'. */
  readonly mode: RedirectMode;
  /**
   * Probes the host, then loads and pins the programs (or adopts the pins a previous agent
   * for this node left) or installs the chains (adopting those found). Idempotent.
   */
  start(): Promise<void>;
  /** Captures the pod's outbound TCP. Idempotent; re-enrolling with a new IP or cgroup moves it. */
  enroll(pod: CaptureTarget): Promise<void>;
  /** Stops capturing the pod. Idempotent; unknown ids are ignored. */
  unenroll(podId: string): Promise<void>;
  /**
   * A listening socket for proxy worker `slot` (0 <= slot < inboundSlots) that receives the
   * enrolled pod's inbound connections (eBPF mode: opened inside the pod's network namespace
   * and handed to the kernel's sk_lookup program). Resolves its file descriptor, now owned by
   * the caller; resolves undefined when the mode needs none (iptables redirects inbound
   * connections to the agent's inbound port) or inbound capture is off.
   */
  openInboundSocket(podId: string, slot: number): Promise<number | undefined>;
  /** Pod ids currently enrolled, including those adopted from a previous agent. */
  enrolled(): readonly string[];
  /** Removes everything (or keeps capture, see CloseOptions). Idempotent. */
  close(opts?: CloseOptions): Promise<void>;
}

export type RedirectMode = 'ebpf' | 'iptables';

/** A pino-compatible logger, narrowed to what the redirector uses. */
export interface RedirectLog {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
}

export const silentLog: RedirectLog = Object.freeze({ info: () => undefined, warn: () => undefined });

/** What the redirector uses from the outside world; every field has a working default. */
export interface RedirectorDeps {
  readonly log?: RedirectLog;
  /** The compiled BPF object (default: bpf/build/redirect.bpf.o in this checkout). */
  readonly objectPath?: string;
  /** Commands, for hosts that install them under other names. */
  readonly bpftool?: string;
  readonly iptablesSave?: string;
  readonly iptablesRestore?: string;
}
