// The control plane's dashboard (15080), wired: the mesh state the control plane holds, the
// traffic rates (from Prometheus when given one, else scraped from every node's agent), the
// agent streams and refusals of the gRPC server, and the CA's revocations with what it knows
// of each certificate it signed.

import type { Logger } from 'pino';

import type { ControlResource } from '../control/resource.ts';
import { resourceKey } from '../control/resource.ts';
import type { MeshState } from '../model/state.ts';
import type { HttpEndpoint } from '../telemetry/http-endpoints.ts';
import {
  AgentSource, PrometheusSource, dashboardModel, startDashboard,
  type AgentStream, type MeshRates, type RevokedCertificate,
} from '../ui/index.ts';

export interface DashboardConfig {
  readonly host: string;
  readonly port: number;
  /** Read rates from this Prometheus (its /api/v1/query) instead of the agents. */
  readonly prometheusUrl: string | undefined;
  /** Where every agent serves /metrics. */
  readonly agentMetricsPort: number;
}

export interface DashboardDeps {
  readonly state: () => MeshState | undefined;
  readonly agents: () => readonly AgentStream[];
  readonly desired: (node: string) => readonly ControlResource[];
  readonly rejected: (node: string) => readonly { readonly key: string; readonly version: string; readonly message: string }[];
  readonly manifestProblems: () => readonly string[];
  readonly revokedSerials: () => readonly string[];
  readonly logger: Logger;
}

/** What the control plane knows of a certificate it signed (control/revocations.ts keeps it). */
export interface SignedCertificates {
  describe(serial: string): RevokedCertificate;
}

export function startControlDashboard(config: DashboardConfig, deps: DashboardDeps, issued: SignedCertificates): Promise<HttpEndpoint> {
  const agentSource = new AgentSource({
    targets: () => {
      const state = deps.state();
      if (state === undefined) return [];
      return state.nodes().flatMap((name) => {
        const address = state.nodeAddress(name);
        return address === undefined ? [] : [{ instance: name, url: `http://${address.includes(':') ? `[${address}]` : address}:${config.agentMetricsPort}/metrics` }];
      });
    },
  });
  const source: { rates(): Promise<MeshRates> } = config.prometheusUrl === undefined
    ? agentSource
    : new PrometheusSource({ url: config.prometheusUrl, fallback: agentSource });
  const empty = { trustDomain: '', workloads: [], services: [], nodes: () => [] };
  return startDashboard({
    host: config.host,
    port: config.port,
    model: async () => {
      const rates = await source.rates();
      const state = deps.state();
      return dashboardModel(state ?? empty, rates, {
        now: Date.now(),
        // A mode only when a PeerAuthentication set it; the view shows the default otherwise.
        peerAuthenticationMode: (w) => {
          const d = state?.mtlsModeFor(w);
          return d?.policy === undefined ? undefined : `${d.mode} (${d.policy})`;
        },
        revoked: deps.revokedSerials().map((s) => issued.describe(s)),
      }, {
        nodes: state?.nodes() ?? [],
        streams: deps.agents(),
        desired: (node) => new Map(deps.desired(node).map((r) => [resourceKey(r), r.version])),
        rejected: deps.rejected,
        manifestProblems: deps.manifestProblems(),
      });
    },
  });
}
