// The control plane's metrics, registered on the Registry the app passes in (no default
// registry). Names follow the weft_control_* prefix; label sets are small and bounded.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ControlServerMetrics {
  readonly connectedAgents: Gauge;
  readonly pushes: Counter<'trigger'>;
  readonly pushedResources: Counter<'change'>;
  readonly acks: Counter;
  readonly nacks: Counter;
  readonly rejectedResources: Counter<'type'>;
  readonly pushLatency: Histogram<'trigger'>;
  readonly authFailures: Counter<'rpc' | 'reason'>;
  readonly certificates: Counter<'kind' | 'result'>;
  readonly snapshots: Counter;
}

export function createControlServerMetrics(registry: Registry): ControlServerMetrics {
  const registers = [registry];
  return Object.freeze({
    connectedAgents: new Gauge({ name: 'weft_control_connected_agents', help: 'Agent config streams currently open', registers }),
    pushes: new Counter({
      name: 'weft_control_pushes_total', help: 'Config responses sent to agents, by what caused them (subscribe or change)',
      labelNames: ['trigger'] as const, registers,
    }),
    pushedResources: new Counter({
      name: 'weft_control_pushed_resources_total', help: 'Resources sent to agents (upsert) or removed from them (remove)',
      labelNames: ['change'] as const, registers,
    }),
    acks: new Counter({ name: 'weft_control_acks_total', help: 'Config responses agents acknowledged', registers }),
    nacks: new Counter({ name: 'weft_control_nacks_total', help: 'Config responses agents refused in whole or part', registers }),
    rejectedResources: new Counter({
      name: 'weft_control_rejected_resources_total', help: 'Resources agents refused, by resource type',
      labelNames: ['type'] as const, registers,
    }),
    pushLatency: new Histogram({
      name: 'weft_control_push_latency_seconds',
      help: 'From a snapshot change (or a subscription) to the agent acknowledging the resulting push',
      labelNames: ['trigger'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    authFailures: new Counter({
      name: 'weft_control_auth_failures_total', help: 'Calls refused for authentication or node mismatch',
      labelNames: ['rpc', 'reason'] as const, registers,
    }),
    certificates: new Counter({
      name: 'weft_control_certificates_total', help: 'Certificate requests (kind: workload or node) by result',
      labelNames: ['kind', 'result'] as const, registers,
    }),
    snapshots: new Counter({ name: 'weft_control_snapshots_total', help: 'Mesh snapshots the server was given', registers }),
  });
}
