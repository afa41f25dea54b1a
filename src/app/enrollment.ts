// Keeps the redirector's enrolled pods equal to the config's enrolled pods on this node.
// Reconciles one at a time, in order; a pod that cannot be enrolled yet (its cgroup is not
// there, say) is logged and tried again on the next reconcile or retry tick. A pod the
// redirector refuses for good (IPv6 addresses: capture is IPv4 only) is released if it was
// captured, logged once as an error, listed in refused(), and not retried until it changes.
// A pod's cgroup is looked up at each attempt, so one the kubelet creates later is found.

import type { Logger } from 'pino';
import { describeError, isWeftError } from '../core/errors.ts';
import { RedirectErrors, type CaptureTarget, type Redirector } from '../redirect/index.ts';

const RETRY_MS = 2000;

/** Told when a pod's capture is in place or gone (e.g. to hand the workers its inbound sockets). */
export interface EnrollmentListener {
  enrolled(podId: string): void;
  released(podId: string): void;
}

/** A pod to capture; `cgroupPath` finds its cgroup now, or throws saying why it cannot. */
export interface CaptureRequest {
  readonly podId: string;
  readonly ip: string;
  readonly ipv6?: readonly string[];
  readonly cgroupPath: () => string;
}

export class EnrollmentReconciler {
  readonly #redirector: Redirector | undefined;
  readonly #logger: Logger;
  #chain: Promise<void> = Promise.resolve();
  #desired: readonly CaptureRequest[] = [];
  readonly #applied = new Map<string, string>();
  /** podId -> [fingerprint, why] of pods refused for good. */
  readonly #refused = new Map<string, readonly [string, string]>();
  #retry: NodeJS.Timeout | undefined;
  #settled = false;

  readonly #listener: EnrollmentListener | undefined;

  constructor(redirector: Redirector | undefined, logger: Logger, listener?: EnrollmentListener) {
    this.#redirector = redirector;
    this.#logger = logger;
    this.#listener = listener;
  }

  /** True once the latest desired set is applied in full: every enrolled pod is captured. */
  get settled(): boolean {
    return this.#settled;
  }

  /** Pods of the config that capture refuses (and why), sorted by id. */
  refused(): { readonly pod: string; readonly reason: string }[] {
    return [...this.#refused].sort(([a], [b]) => (a < b ? -1 : 1)).map(([pod, [, reason]]) => ({ pod, reason }));
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
        this.#listener?.released(podId);
        this.#logger.info({ pod: podId }, 'pod released from capture');
      } catch (err: unknown) {
        failed++;
        this.#logger.warn({ pod: podId, err: describeError(err) }, 'could not release pod from capture');
      }
    }
    for (const podId of [...this.#refused.keys()]) if (!want.has(podId)) this.#refused.delete(podId);
    for (const request of desired) {
      let cgroupPath: string;
      try {
        cgroupPath = request.cgroupPath();
      } catch (err: unknown) {
        // A pod with IPv6 addresses is refused whatever its cgroup; let the redirector say so.
        if ((request.ipv6 ?? []).length === 0) {
          failed++;
          this.#logger.warn({ pod: request.podId, err: describeError(err) }, 'could not find the pod\'s cgroup; will retry');
          continue;
        }
        cgroupPath = '/';
      }
      const t: CaptureTarget = { podId: request.podId, ip: request.ip, cgroupPath, ...(request.ipv6 === undefined ? {} : { ipv6: request.ipv6 }) };
      const fingerprint = `${t.ip} ${t.cgroupPath} ${(t.ipv6 ?? []).join(',')}`;
      if (this.#applied.get(t.podId) === fingerprint || this.#refused.get(t.podId)?.[0] === fingerprint) continue;
      try {
        await redirector.enroll(t);
        this.#applied.set(t.podId, fingerprint);
        this.#refused.delete(t.podId);
        this.#listener?.enrolled(t.podId);
        this.#logger.info({ pod: t.podId, ip: t.ip }, 'pod captured');
      } catch (err: unknown) {
        if (isWeftError(err, RedirectErrors.IPV6_UNSUPPORTED)) {
          await this.#refuse(redirector, t, fingerprint, err);
          continue;
        }
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

  /** A permanent refusal: nothing of the pod stays captured (a pod that gained IPv6 is released). */
  async #refuse(redirector: Redirector, t: CaptureTarget, fingerprint: string, err: Error & { code: string }): Promise<void> {
    this.#applied.delete(t.podId);
    if (redirector.enrolled().includes(t.podId)) {
      try {
        await redirector.unenroll(t.podId);
        this.#listener?.released(t.podId);
      } catch (unenrollErr: unknown) {
        this.#logger.warn({ pod: t.podId, err: describeError(unenrollErr) }, 'could not release a refused pod from capture');
      }
    }
    this.#refused.set(t.podId, [fingerprint, err.message]);
    this.#logger.error({ pod: t.podId, code: err.code, err: err.message }, 'pod refused: it is not captured');
  }
}
