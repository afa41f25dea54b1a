// The agent's workload-certificate gauges and counters, for the "certificate near expiry"
// and "renewal failing" alerts (deploy/prometheus/weft-rules.yaml) and the dashboard's
// security view. Label sets are bounded by the identities scheduled on the node; an identity
// that leaves the node leaves the metrics too.

import { Counter, Gauge, type Registry } from 'prom-client';

/** The events the agent's CertificateStore emits, as far as metrics care. */
export type CertificateMetricEvent =
  | { readonly type: 'issued'; readonly identity: string; readonly notAfter: Date }
  | { readonly type: 'failed'; readonly identity: string }
  | { readonly type: 'expired' | 'removed'; readonly identity: string };

export class CertificateMetrics {
  readonly #expiry: Gauge<'identity'>;
  readonly #renewals: Counter<'identity' | 'result'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.#expiry = new Gauge({
      name: 'weft_agent_certificate_expiry_timestamp_seconds',
      help: 'When the workload certificate the agent serves for an identity expires (Unix seconds)',
      labelNames: ['identity'] as const, registers,
    });
    this.#renewals = new Counter({
      name: 'weft_agent_certificate_requests_total',
      help: 'Workload certificate requests (first issue and renewals) by result (success or failure)',
      labelNames: ['identity', 'result'] as const, registers,
    });
  }

  observe(event: CertificateMetricEvent): void {
    switch (event.type) {
      case 'issued':
        this.#expiry.set({ identity: event.identity }, event.notAfter.getTime() / 1000);
        this.#renewals.inc({ identity: event.identity, result: 'success' });
        // Present at 0 from the start, so the first failure is an increase Prometheus sees.
        this.#renewals.inc({ identity: event.identity, result: 'failure' }, 0);
        break;
      case 'failed':
        this.#renewals.inc({ identity: event.identity, result: 'failure' });
        break;
      case 'expired':
        this.#expiry.remove({ identity: event.identity });
        break;
      case 'removed':
        this.#expiry.remove({ identity: event.identity });
        this.#renewals.remove({ identity: event.identity, result: 'success' });
        this.#renewals.remove({ identity: event.identity, result: 'failure' });
        break;
    }
  }
}
