// Keeps the redirector's enrolled pods equal to the config's enrolled pods on this node.
// Reconciles one at a time, in order; a pod that cannot be enrolled yet (its cgroup is not
// there, say) is logged and tried again on the next reconcile or retry tick. A pod's cgroup
// is looked up at each attempt, so one the kubelet creates later is found.

import type { Logger } from 'pino';
import { describeError } from '../core/errors.ts';
import type { CaptureTarget, Redirector } from '../redirect/index.ts';

const RETRY_MS = 2000;

/** A pod to capture; `cgroupPath` finds its cgroup now, or throws saying why it cannot. */
export interface CaptureRequest {
  readonly podId: string;
  readonly ip: string;
  readonly cgroupPath: () => string;
}

export class EnrollmentReconciler {
  readonly #redirector: Redirector | undefined;
  readonly #logger: Logger;
  #chain: Promise<void> = Promise.resolve();
  #desired: readonly CaptureRequest[] = [];
  readonly #applied = new Map<string, string>();
  #retry: NodeJS.Timeout | undefined;
  #settled = false;

  constructor(redirector: Redirector | undefined, logger: Logger) {
    this.#redirector = redirector;
    this.#logger = logger;
  }

  /** True once the latest desired set is applied in full: every enrolled pod is captured. */
  get settled(): boolean {
    return this.#settled;
  }

  reconcile(desired: readonly CaptureRequest[]): void {
    this.#desired = desired;
    this.#settled = false;
    this.#chain = this.#chain.then(() => this.#apply());
  }

  /** Resolves when no reconcile is under way. */
  idle(): Promise<void> {
    clearTimeout(this.#retry);
    return this.#chain;
  }

  async #apply(): Promise<void> {
    const redirector = this.#redirector;
    const desired = this.#desired;
    if (redirector === undefined) {
      this.#settled = true;
      return;
    }
    const want = new Map(desired.map((t) => [t.podId, t]));
    let failed = 0;
    for (const podId of redirector.enrolled()) {
      if (want.has(podId)) continue;
      try {
        await redirector.unenroll(podId);
        this.#applied.delete(podId);
        this.#logger.info({ pod: podId }, 'pod released from capture');
      } catch (err: unknown) {
        failed++;
        this.#logger.warn({ pod: podId, err: describeError(err) }, 'could not release pod from capture');
      }
    }
    for (const request of desired) {
      let t: CaptureTarget;
      try {
        t = { podId: request.podId, ip: request.ip, cgroupPath: request.cgroupPath() };
      } catch (err: unknown) {
        failed++;
        this.#logger.warn({ pod: request.podId, err: describeError(err) }, 'could not find the pod\'s cgroup; will retry');
        continue;
      }
      const fingerprint = `${t.ip} ${t.cgroupPath}`;
      if (this.#applied.get(t.podId) === fingerprint) continue;
      try {
        await redirector.enroll(t);
        this.#applied.set(t.podId, fingerprint);
        this.#logger.info({ pod: t.podId, ip: t.ip }, 'pod captured');
      } catch (err: unknown) {
        failed++;
        this.#logger.warn({ pod: t.podId, err: describeError(err) }, 'could not capture pod; will retry');
      }
    }
    if (failed === 0 && this.#desired === desired) this.#settled = true;
    if (failed > 0 && this.#desired === desired) {
      clearTimeout(this.#retry);
      this.#retry = setTimeout(() => this.reconcile(this.#desired), RETRY_MS);
      this.#retry.unref();
    }
  }
}
