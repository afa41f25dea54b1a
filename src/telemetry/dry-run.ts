// Dry-run policies (weft.dev/dry-run: "true") decide but never enforce: each of their
// would-be denials (a connection or request that was allowed, and that the policy, enforced,
// would deny) is counted in weft_policy_dry_run_denials_total{policy,namespace} and logged at
// a bounded rate, so an operator can check a policy before turning it on.

import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Clock } from '../core/clock.ts';
import { RateLimitedLog } from './rate-limited-log.ts';

/** What a decision says about dry-run, as the policy engine answers it. */
export interface DryRunDecision {
  readonly allowed: boolean;
  readonly dryRun?: { readonly allowed: boolean; readonly policy?: string; readonly reason: string } | undefined;
}

/** What is logged of the request a decision was about. */
export interface DryRunSubject {
  readonly sourceIp: string;
  readonly sourcePrincipal: string | undefined;
  readonly destinationWorkload: { readonly key: string };
  readonly destinationPort: number;
}

/** `authorize`, reporting every decision's would-be dry-run denial to `reporter`. */
export function reportingDryRun<R extends DryRunSubject, D extends DryRunDecision>(authorize: (r: R) => D, reporter: DryRunReporter): (r: R) => D {
  return (r) => {
    const decision = authorize(r);
    if (decision.dryRun !== undefined) {
      reporter.observe(decision, () => ({ src: r.sourceIp, principal: r.sourcePrincipal, dst: r.destinationWorkload.key, port: r.destinationPort }));
    }
    return decision;
  };
}

export class DryRunReporter {
  readonly #denials: Counter<'policy' | 'namespace'>;
  readonly #log: RateLimitedLog;

  constructor(o: { registry: Registry; logger: Pick<Logger, 'warn'>; clock: Clock; logsPerSecond?: number }) {
    this.#denials = new Counter({
      name: 'weft_policy_dry_run_denials_total', labelNames: ['policy', 'namespace'], registers: [o.registry],
      help: 'Connections or requests a dry-run AuthorizationPolicy (weft.dev/dry-run: "true") would have denied; none was',
    });
    this.#log = new RateLimitedLog(o.logger, o.clock, o.logsPerSecond ?? 10);
  }

  /** Looks at one decision; counts and logs it when only dry-run policies would deny it. */
  observe(decision: DryRunDecision, what: () => Record<string, unknown>): void {
    const dry = decision.dryRun;
    if (!decision.allowed || dry === undefined || dry.allowed) return;
    const key = dry.policy ?? '';
    const slash = key.indexOf('/');
    const namespace = slash < 0 ? '' : key.slice(0, slash);
    const policy = slash < 0 ? key : key.slice(slash + 1);
    this.#denials.inc({ policy, namespace });
    this.#log.warn({ ...what(), policy: key, reason: dry.reason }, 'dry-run policy would deny this (not enforced)');
  }
}
