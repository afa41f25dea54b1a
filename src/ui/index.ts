// The dashboard: topology, security and control-plane views of the mesh, served by the
// control plane (15080). Pure views over the state and the traffic rates, two rate sources
// (the agents directly, or Prometheus), and a small HTTP server for the page.

export { AgentSource, type AgentSourceOptions, type ScrapeTarget } from './agent-source.ts';
export { PrometheusSource, familyQueries, type PrometheusSourceOptions } from './prometheus-source.ts';
export { dashboardModel, type DashboardModel } from './dashboard-model.ts';
export { startDashboard, acceptableHost, type DashboardServerOptions } from './dashboard-server.ts';
export { topology, type Topology, type TopologyEdge, type TopologyNode, type TopologyState } from './topology.ts';
export type { AgentStream, ControlInputs } from './control-view.ts';
export type { RevokedCertificate, SecurityInputs } from './security-view.ts';
export type { MeshRates } from './mesh-rates.ts';
