// Services shaped like the Gateway API mesh conformance suite's (echo, echo-v1, echo-v2 in
// one namespace, a consumer namespace beside it), and helpers to route one request.

import { parseManifests } from '../../../src/model/manifests.ts';
import { buildMeshState, type MeshState } from '../../../src/model/state.ts';
import { decideRoute } from '../../../src/model/route-match.ts';
import type { RouteDecision, RouteRequest } from '../../../src/model/route-decision.ts';
import { yamlOf } from './fixture.ts';

export const NS = 'mesh';
export const CONSUMER_NS = 'consumer';

function service(name: string, ip: string, ports: object[]): object {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: NS }, spec: { clusterIP: ip, selector: { app: name }, ports } };
}

export const SERVICE_DOCS: readonly object[] = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'weft.dev/mesh': 'enabled' } } },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: CONSUMER_NS, labels: { 'weft.dev/mesh': 'enabled' } } },
  service('echo', '198.19.1.1', [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'grpc', port: 7070, appProtocol: 'grpc' }]),
  service('echo-v1', '198.19.1.2', [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'http-alt', port: 8080 }, { name: 'grpc', port: 7070 }]),
  service('echo-v2', '198.19.1.3', [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'http-alt', port: 8080 }, { name: 'grpc', port: 7070 }]),
  service('echo-v3', '198.19.1.4', [{ name: 'grpc', port: 7070 }]),
];

export function route(kind: 'HTTPRoute' | 'GRPCRoute', name: string, spec: object, namespace = NS, metadata: object = {}): object {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind, metadata: { name, namespace, ...metadata }, spec };
}

/** parentRefs entry for a Service of the fixture. */
export function parent(name: string, extra: object = {}): object {
  return { group: '', kind: 'Service', name, ...extra };
}

export function meshWith(routes: readonly object[]): MeshState {
  const parsed = parseManifests([{ path: 'routes.yaml', text: yamlOf([...SERVICE_DOCS, ...routes]) }]);
  if (parsed.problems.length > 0) throw new Error(`fixture has problems: ${JSON.stringify(parsed.problems)}`);
  return buildMeshState(parsed);
}

export function request(path: string, opts: Partial<RouteRequest> = {}): RouteRequest {
  return { method: 'GET', path, headers: {}, authority: 'echo', grpc: false, sourceNamespace: NS, ...opts };
}

/** Routes one request sent to `service:port` of the fixture. `random` is fixed (0.5) unless given. */
export function decide(state: MeshState, target: string, req: RouteRequest, random: () => number = () => 0.5): RouteDecision {
  const [name = '', port = '80'] = target.split(':');
  const svc = state.service(`${NS}/${name}`);
  if (svc === undefined) throw new Error(`no service ${name}`);
  return decideRoute(state.routeTable(svc, Number(port)), req, random);
}

/** The Service a decision forwards to (`name:port`), or `status N` / `redirect N location`. */
export function outcome(d: RouteDecision): string {
  if (d.kind === 'forward') return `${d.backend.serviceKey.split('/')[1] ?? ''}:${d.backend.port}`;
  if (d.kind === 'redirect') return `redirect ${d.status} ${d.location}`;
  return `status ${d.status}`;
}
