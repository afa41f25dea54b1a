// The agent's side of node resources: checks each received resource on its own (a bad one
// is rejected alone, with its key named) and turns the good ones back into MeshContent,
// ready for meshStateFromContent.

import { isIPv4, isIPv6 } from 'node:net';
import type { AuthorizationPolicyObject, Endpoint, MeshNode, MeshService, PeerAuthenticationObject, ServicePortEndpoints, Workload } from './types.ts';
import { compareEndpoints, type MeshContent } from './resolve.ts';
import { endpointName, resourceVersion, type EndpointBody, type NodeIdentity, type NodeResource, type ResourceType } from './node-slice.ts';
import { checkSchema, integer, requiredExcept, type Schema } from './schema-check.ts';
import { parseCidr } from './cidr.ts';
import { tryParseSpiffeId } from './spiffe.ts';
import { nodeAddressProblem } from './core-kinds.ts';
import { routeResourceIssues } from './route-codec.ts';
import { routeKey, type RouteObject } from './route-types.ts';
import { sortTrafficPolicies, trafficPolicyKey, type TrafficPolicyObject } from './traffic-policy-types.ts';

const str: Schema = { type: 'string' };
const ip: Schema = { type: 'string', check: (s) => (isIPv4(s) ? undefined : `must be an IPv4 address, got ${JSON.stringify(s)}`) };
const int = integer;
const port = int(1, 65535);
const portOrName: Schema = {
  type: 'custom', what: 'a port number or a port name',
  check: (v) => (typeof v === 'string' && v !== '' && v.length <= 15 ? undefined : checkSchema(port, v, '')[0]?.message),
};
const spiffe: Schema = { type: 'string', check: (s) => (tryParseSpiffeId(s) === undefined ? `must be a SPIFFE id, got ${JSON.stringify(s)}` : undefined) };
const strings: Schema = { type: 'array', items: str };
const cidrs: Schema = {
  type: 'array',
  items: { type: 'string', check: (s) => { try { parseCidr(s); return undefined; } catch { return `must be an IPv4 CIDR, got ${JSON.stringify(s)}`; } } },
};
const obj = requiredExcept;

const ipv6s: Schema = {
  type: 'array', items: { type: 'string', check: (s) => (isIPv6(s) ? undefined : `must be an IPv6 address, got ${JSON.stringify(s)}`) },
};
const WORKLOAD = obj({
  key: str, name: str, namespace: str, serviceAccount: str, node: str, ip, ipv6: ipv6s, labels: { type: 'map', values: str },
  enrolled: { type: 'boolean' }, identity: spiffe, uid: str, ports: { type: 'map', values: port },
}, ['node', 'ip', 'ipv6', 'uid', 'ports']);
const ENDPOINT = obj({ ip, port, node: str, workload: str, weight: int(0, 1_000_000) }, ['node', 'workload']);
const SERVICE = obj({
  key: str, name: str, namespace: str, vip: ip,
  ports: { type: 'array', items: obj({ name: str, port, targetPort: portOrName, protocol: { type: 'string', enum: ['TCP'] }, appProtocol: str }, ['name', 'appProtocol']) },
  endpointSource: { type: 'string', enum: ['EndpointSlice', 'selector', 'none'] },
  // Endpoints come as `endpoint` resources; a Service that carries them itself (a control
  // plane from before they were split out) is taken as it is.
  endpoints: { type: 'array', items: obj({ port, endpoints: { type: 'array', items: ENDPOINT } }) },
}, ['endpoints']);
const ENDPOINT_RESOURCE = obj({ service: str, port, ip, targetPort: port, node: str, workload: str, weight: int(0, 1_000_000) }, ['node', 'workload']);
const POLICY = obj({
  name: str, namespace: str, selector: { type: 'map', values: str }, action: { type: 'string', enum: ['ALLOW', 'DENY'] },
  dryRun: { type: 'boolean' },
  rules: {
    type: 'array',
    items: obj({
      from: {
        type: 'array',
        items: obj({ principals: strings, notPrincipals: strings, namespaces: strings, notNamespaces: strings, ipBlocks: cidrs, notIpBlocks: cidrs },
          ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks']),
      },
      to: {
        type: 'array',
        items: obj({
          ports: { type: 'array', items: port }, notPorts: { type: 'array', items: port },
          methods: strings, notMethods: strings, paths: strings, notPaths: strings, hosts: strings, notHosts: strings,
        }, ['ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths', 'hosts', 'notHosts']),
      },
      when: { type: 'array', items: obj({ key: str, values: strings, notValues: strings }, ['values', 'notValues']) },
    }, ['when']),
  },
});
const PEER_AUTHENTICATION = obj({
  name: str, namespace: str, selector: { type: 'map', values: str }, mode: { type: 'string', enum: ['STRICT', 'PERMISSIVE'] },
}, ['mode']);
const IDENTITY = obj({ namespace: str, serviceAccount: str, identity: spiffe });
const MESH = obj({ trustDomain: str, node: str });
const NODE = obj({
  name: str,
  address: {
    type: 'string',
    check: (s) => {
      if (!isIPv4(s)) return `must be an IPv4 address, got ${JSON.stringify(s)}`;
      const bad = nodeAddressProblem(s);
      return bad === undefined ? undefined : `${JSON.stringify(s)} cannot be a node address: ${bad}`;
    },
  },
});

const ROUTE: Schema = {
  type: 'custom', what: 'an HTTPRoute or GRPCRoute',
  check: (v) => {
    const issues = routeResourceIssues(v, '');
    return issues.length === 0 ? undefined : issues.map((i) => `${i.field} ${i.message}`).join('; ');
  },
};

const percent: Schema = { type: 'custom', what: 'a percentage 0-100', check: (v) => (typeof v === 'number' && v >= 0 && v <= 100 ? undefined : `got ${JSON.stringify(v)}`) };
const rate: Schema = { type: 'custom', what: 'a rate above 0', check: (v) => (typeof v === 'number' && v > 0 && Number.isFinite(v) ? undefined : `got ${JSON.stringify(v)}`) };
const RATE = obj({ requestsPerSecond: rate, burst: int(1, 2_147_483_647) });
const TARGET = obj({ name: str });
const TRAFFIC_SCHEMAS: Readonly<Record<string, Schema>> = {
  DestinationPolicy: obj({
    kind: str, name: str, namespace: str, targetRef: TARGET,
    connectionPool: obj({ maxConnections: int(1, 2_147_483_647), maxPendingRequests: int(1, 2_147_483_647), maxRequestsPerConnection: int(0, 2_147_483_647) },
      ['maxConnections', 'maxPendingRequests', 'maxRequestsPerConnection']),
    outlierDetection: obj({ consecutive5xxErrors: int(0, 2_147_483_647), intervalMs: int(1, 2 ** 40), baseEjectionMs: int(1, 2 ** 40), maxEjectionPercent: int(0, 100) }),
    retryBudget: obj({ retryRatio: { type: 'custom', what: 'a ratio 0-1000', check: (v) => (typeof v === 'number' && v >= 0 && v <= 1000 ? undefined : `got ${JSON.stringify(v)}`) }, minRetriesPerSecond: int(0, 1_000_000), ttlMs: int(10, 60_000) }),
  }, ['outlierDetection', 'retryBudget']),
  RateLimitPolicy: obj({
    kind: str, name: str, namespace: str, targetRef: TARGET, selector: { type: 'map', values: str },
    total: RATE, perSource: RATE, connections: RATE,
    overrides: { type: 'array', items: obj({ principal: spiffe, requestsPerSecond: rate, burst: int(1, 2_147_483_647) }) },
    mode: { type: 'string', enum: ['Enforce', 'Shadow'] },
  }, ['targetRef', 'selector', 'total', 'perSource', 'connections']),
  FaultInjection: obj({
    kind: str, name: str, namespace: str,
    delay: obj({ fixedDelayMs: int(1, 2 ** 40), percentage: percent }),
    abort: obj({ httpStatus: int(200, 599), grpcStatus: int(1, 16), percentage: percent }, ['grpcStatus']),
  }, ['delay', 'abort']),
};
const TRAFFIC_POLICY: Schema = {
  type: 'custom', what: 'a DestinationPolicy, RateLimitPolicy or FaultInjection',
  check: (v) => {
    const kind = typeof v === 'object' && v !== null ? (v as { kind?: unknown }).kind : undefined;
    const schema = typeof kind === 'string' ? TRAFFIC_SCHEMAS[kind] : undefined;
    if (schema === undefined) return `kind ${JSON.stringify(kind)} is not one`;
    const issues = checkSchema(schema, v, '');
    return issues.length === 0 ? undefined : issues.map((i) => `${i.field} ${i.message}`).join('; ');
  },
};

const SCHEMAS: Readonly<Record<ResourceType, Schema>> = {
  mesh: MESH, workload: WORKLOAD, service: SERVICE, endpoint: ENDPOINT_RESOURCE, authorization: POLICY, peerauthentication: PEER_AUTHENTICATION, identity: IDENTITY, node: NODE, route: ROUTE,
  trafficpolicy: TRAFFIC_POLICY,
};

export interface ResourceProblem {
  /** `type/name` */
  readonly key: string;
  readonly message: string;
}

export interface DecodedResources {
  readonly node: string | undefined;
  readonly content: MeshContent;
  readonly identities: readonly NodeIdentity[];
  readonly problems: readonly ResourceProblem[];
}

/** The name a body must carry under its type, so a resource cannot masquerade as another. */
function nameOf(type: ResourceType, body: Record<string, unknown>): string {
  switch (type) {
    case 'mesh': return 'config';
    case 'node': return String(body.name);
    case 'workload': case 'service': return String(body.key);
    case 'endpoint': return endpointName(String(body.service), Number(body.port), String(body.ip));
    case 'authorization': case 'peerauthentication': return `${String(body.namespace)}/${String(body.name)}`;
    case 'identity': return `${String(body.namespace)}/${String(body.serviceAccount)}`;
    case 'route': return routeKey(body as unknown as RouteObject);
    case 'trafficpolicy': return trafficPolicyKey(body as unknown as TrafficPolicyObject);
  }
}

/** A Service with its endpoint resources put back, as the model resolved it (per port, by address). */
function withEndpoints(svc: MeshService, given: readonly EndpointBody[]): MeshService {
  if ((svc as Partial<MeshService>).endpoints !== undefined) return svc;
  const byPort = Map.groupBy(given, (e) => e.port);
  const endpoints: ServicePortEndpoints[] = [...svc.ports].sort((a, b) => a.port - b.port).map((p) => Object.freeze({
    port: p.port,
    // The model's endpoint fields, in its order; those undefined left out (as JSON leaves them).
    endpoints: Object.freeze((byPort.get(p.port) ?? []).map((b): Endpoint => Object.freeze({
      ip: b.ip, port: b.targetPort, ...(b.node === undefined ? {} : { node: b.node }), ...(b.workload === undefined ? {} : { workload: b.workload }), weight: b.weight,
    }) as Endpoint).sort(compareEndpoints)),
  }));
  return Object.freeze({ ...svc, endpoints: Object.freeze(endpoints) });
}

export function decodeNodeResources(resources: Iterable<NodeResource>, fallbackTrustDomain = 'cluster.local'): DecodedResources {
  const problems: ResourceProblem[] = [];
  const workloads: Workload[] = [];
  const services: MeshService[] = [];
  const policies: AuthorizationPolicyObject[] = [];
  const peerAuthentications: PeerAuthenticationObject[] = [];
  const identities: NodeIdentity[] = [];
  const nodes: MeshNode[] = [];
  const routes: RouteObject[] = [];
  const trafficPolicies: TrafficPolicyObject[] = [];
  const endpoints = new Map<string, EndpointBody[]>();
  let mesh: { trustDomain: string; node: string } | undefined;
  for (const r of resources) {
    const key = `${String(r.type)}/${String(r.name)}`;
    const schema = (SCHEMAS as Record<string, Schema | undefined>)[r.type];
    if (schema === undefined) {
      problems.push({ key, message: `unknown resource type ${JSON.stringify(r.type)}` });
      continue;
    }
    const issues = checkSchema(schema, r.body, 'body');
    if (issues.length > 0) {
      problems.push(...issues.map((i) => ({ key, message: `${i.field} ${i.message}` })));
      continue;
    }
    const body = r.body as Record<string, unknown>;
    if (nameOf(r.type, body) !== r.name) {
      problems.push({ key, message: `body names ${JSON.stringify(nameOf(r.type, body))}, not ${JSON.stringify(r.name)}` });
      continue;
    }
    if (resourceVersion(body) !== r.version) {
      problems.push({ key, message: `version ${JSON.stringify(r.version)} does not match the body's content hash` });
      continue;
    }
    switch (r.type) {
      case 'mesh': mesh = body as typeof mesh; break;
      case 'workload': workloads.push(body as unknown as Workload); break;
      case 'service': services.push(body as unknown as MeshService); break;
      case 'endpoint': {
        const e = body as unknown as EndpointBody;
        const list = endpoints.get(e.service);
        if (list === undefined) endpoints.set(e.service, [e]);
        else list.push(e);
        break;
      }
      case 'authorization': policies.push(body as unknown as AuthorizationPolicyObject); break;
      case 'peerauthentication': peerAuthentications.push(body as unknown as PeerAuthenticationObject); break;
      case 'identity': identities.push(body as unknown as NodeIdentity); break;
      case 'node': nodes.push(body as unknown as MeshNode); break;
      case 'route': routes.push(body as unknown as RouteObject); break;
      case 'trafficpolicy': trafficPolicies.push(body as unknown as TrafficPolicyObject); break;
    }
  }
  const byKey = <T>(k: (t: T) => string) => (a: T, b: T): number => (k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0);
  return {
    node: mesh?.node,
    identities: identities.sort(byKey((i) => `${i.namespace}/${i.serviceAccount}`)),
    problems,
    content: {
      trustDomain: mesh?.trustDomain ?? fallbackTrustDomain,
      workloads: workloads.sort(byKey((w) => w.key)),
      services: services.map((svc) => withEndpoints(svc, endpoints.get(svc.key) ?? [])).sort(byKey((s) => s.key)),
      policies: policies.sort(byKey((p) => `${p.namespace}/${p.name}`)),
      nodes: nodes.sort(byKey((n) => n.name)),
      routes: routes.sort(byKey(routeKey)),
      peerAuthentications: peerAuthentications.sort(byKey((p) => `${p.namespace}/${p.name}`)),
      trafficPolicies: sortTrafficPolicies(trafficPolicies),
    },
  };
}
