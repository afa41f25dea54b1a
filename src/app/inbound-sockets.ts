// Hands each proxy worker its inbound socket for every enrolled pod (eBPF inbound capture:
// the redirector opens one per pod and worker inside the pod's network namespace), and
// takes them back when a pod leaves. A worker that crashed gets new ones. In iptables mode
// the redirector opens none and this does nothing: inbound connections come to 15006.

import type { Logger } from 'pino';
import { closeSync } from 'node:fs';
import { describeError } from '../core/errors.ts';
import type { ToWorker } from './worker-messages.ts';

/** What this needs from the redirector. */
export interface InboundSocketSource {
  openInboundSocket(podId: string, slot: number): Promise<number | undefined>;
}

/** What this needs from the proxy workers. */
export interface InboundSocketSink {
  readonly count: number;
  postTo(index: number, message: ToWorker): void;
}

export class InboundSockets {
  readonly #source: InboundSocketSource;
  readonly #sink: InboundSocketSink;
  readonly #logger: Logger;
  readonly #pods = new Set<string>();
  #chain: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(source: InboundSocketSource, sink: InboundSocketSink, logger: Logger) {
    this.#source = source;
    this.#sink = sink;
    this.#logger = logger;
  }

  /** A pod was captured (or captured again with a new address): every worker gets a socket for it. */
  podEnrolled(podId: string): Promise<void> {
    this.#pods.add(podId);
    return this.#queue(async () => {
      for (let slot = 0; slot < this.#sink.count; slot++) await this.#open(podId, slot);
    });
  }

  /** A pod was released: the workers close its sockets. */
  podReleased(podId: string): void {
    if (!this.#pods.delete(podId)) return;
    for (let slot = 0; slot < this.#sink.count; slot++) this.#sink.postTo(slot, { type: 'inbound-release', pod: podId });
  }

  /** A worker was replaced: its sockets went with the old thread. */
  workerRestarted(slot: number): Promise<void> {
    return this.#queue(async () => {
      for (const podId of this.#pods) await this.#open(podId, slot);
    });
  }

  /** Resolves when nothing is being opened. */
  idle(): Promise<void> {
    return this.#chain;
  }

  close(): void {
    this.#closed = true;
  }

  #queue(work: () => Promise<void>): Promise<void> {
    this.#chain = this.#chain.then(work);
    return this.#chain;
  }

  async #open(podId: string, slot: number): Promise<void> {
    if (this.#closed || !this.#pods.has(podId)) return;
    let fd: number | undefined;
    try {
      fd = await this.#source.openInboundSocket(podId, slot);
    } catch (err: unknown) {
      this.#logger.error({ pod: podId, worker: slot, err: describeError(err) }, 'cannot open the pod\'s inbound socket: its inbound connections are refused until it is');
      return;
    }
    if (fd === undefined) return;
    if (this.#closed || !this.#pods.has(podId)) {
      closeSync(fd);
      return;
    }
    this.#sink.postTo(slot, { type: 'inbound-socket', pod: podId, fd });
  }
}
