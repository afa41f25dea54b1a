// Everything the page shows in one JSON document, put together from the mesh state, the
// traffic rates and the control plane's books. Pure.

import { banners, type Banner } from './banners.ts';
import { controlView, type ControlInputs, type ControlView } from './control-view.ts';
import type { MeshRates } from './mesh-rates.ts';
import { securityView, type SecurityInputs, type SecurityView } from './security-view.ts';
import { topology, type Topology, type TopologyState } from './topology.ts';

export interface DashboardModel {
  /** Epoch ms. */
  readonly generatedAt: number;
  readonly source: MeshRates['source'];
  readonly windowSeconds: number;
  readonly note: string | undefined;
  readonly topology: Topology;
  readonly security: SecurityView;
  readonly control: ControlView;
  readonly banners: readonly Banner[];
}

export function dashboardModel(
  state: TopologyState, rates: MeshRates, security: SecurityInputs, control: Omit<ControlInputs, 'unreachable'>,
): DashboardModel {
  const graph = topology(state, rates);
  const sec = securityView(state, rates, graph, security);
  const ctl = controlView({ ...control, unreachable: new Set(rates.unreachable.map((u) => u.instance)) });
  return {
    generatedAt: security.now, source: rates.source, windowSeconds: rates.windowSeconds, note: rates.note,
    topology: graph, security: sec, control: ctl, banners: banners(rates, sec, ctl),
  };
}
