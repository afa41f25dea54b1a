// What can be said about routes only against the rest of the mesh: the Gateway API status
// of each route per Service parent (Accepted, ResolvedRefs) and the problems `weft vet`
// reports (a parent that is not an existing Service or port, an unknown backend, weights
// summing to 0, a match shadowed by an identical one, a route on a port weft never parses
// as HTTP, an HTTPRoute overridden by a GRPCRoute). Pure.

import type { MeshService } from './types.ts';
import type { BackendObjectRef, GrpcRouteMatch, HttpRouteMatch, RouteObject, RouteParentRef } from './route-types.ts';
import { isServiceParent, routeKey, WEFT_CONTROLLER_NAME } from './route-types.ts';
import { protocolFor } from './protocol.ts';
import type { MeshState } from './state.ts';

export interface RouteCondition {
  readonly type: 'Accepted' | 'ResolvedRefs';
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
}

/** One entry of status.parents, for a Service parent (weft writes no others). */
export interface RouteParentStatus {
  readonly parentRef: RouteParentRef;
  readonly controllerName: string;
  readonly conditions: readonly RouteCondition[];
}

export interface RouteFinding {
  /** `Kind/namespace/name` */
  readonly route: string;
  /** Dotted path, e.g. `spec.rules[0].backendRefs[1]`. */
  readonly field: string;
  readonly message: string;
}

function servicePorts(p: RouteParentRef, svc: MeshService): number[] {
  return svc.ports.filter((sp) => (p.port === undefined || sp.port === p.port) && (p.sectionName === undefined || sp.name === p.sectionName)).map((sp) => sp.port);
}

function describeParent(p: RouteParentRef): string {
  const narrow = [p.port === undefined ? '' : ` port ${p.port}`, p.sectionName === undefined ? '' : ` sectionName ${p.sectionName}`].join('');
  return `Service ${p.namespace}/${p.name}${narrow}`;
}

function backendProblem(ref: BackendObjectRef, state: MeshState): { reason: 'InvalidKind' | 'BackendNotFound'; message: string } | undefined {
  if (!((ref.group === '' || ref.group === 'core') && ref.kind === 'Service')) {
    return { reason: 'InvalidKind', message: `${ref.group === '' ? '' : `${ref.group}/`}${ref.kind} ${ref.name} is not a Service; weft sends only to Services` };
  }
  const svc = state.service(`${ref.namespace}/${ref.name}`);
  if (svc === undefined) return { reason: 'BackendNotFound', message: `Service ${ref.namespace}/${ref.name} does not exist` };
  if (!svc.ports.some((p) => p.port === ref.port)) {
    return { reason: 'BackendNotFound', message: `Service ${ref.namespace}/${ref.name} has no port ${String(ref.port)} (ports: ${svc.ports.map((p) => p.port).join(', ')})` };
  }
  return undefined;
}

/** Every backendRef and mirror of a route with its field path. */
function references(route: RouteObject): { field: string; ref: BackendObjectRef }[] {
  const out: { field: string; ref: BackendObjectRef }[] = [];
  route.rules.forEach((rule, i) => {
    const mirrors = (filters: typeof rule.filters, at: string) => filters.forEach((f, k) => {
      if (f.type === 'RequestMirror') out.push({ field: `${at}[${k}].requestMirror.backendRef`, ref: f.requestMirror.backendRef });
    });
    mirrors(rule.filters, `spec.rules[${i}].filters`);
    rule.backendRefs.forEach((b, j) => {
      out.push({ field: `spec.rules[${i}].backendRefs[${j}]`, ref: b });
      mirrors(b.filters, `spec.rules[${i}].backendRefs[${j}].filters`);
    });
  });
  return out;
}

/** Routes of the other kind that win on one of the route's ports (GRPCRoute over HTTPRoute, within one producer/consumer group). */
function conflictingGrpc(route: RouteObject, port: string, state: MeshState): RouteObject | undefined {
  if (route.kind !== 'HTTPRoute') return undefined;
  const colon = port.lastIndexOf(':');
  const svc = state.service(port.slice(0, colon));
  if (svc === undefined) return undefined;
  const table = state.routeTable(svc, Number(port.slice(colon + 1)));
  const group = route.namespace === svc.namespace ? table.producer : table.consumers.get(route.namespace);
  return group?.kind === 'GRPCRoute' ? group.routes[0] : undefined;
}

/** status.parents entries weft owns: one per Service parentRef. */
export function routeParentStatuses(route: RouteObject, state: MeshState): RouteParentStatus[] {
  const unresolved = references(route).map((r) => backendProblem(r.ref, state)).filter((p) => p !== undefined);
  const resolved: RouteCondition = unresolved.length === 0
    ? { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'every backend is a Service port' }
    : { type: 'ResolvedRefs', status: 'False', reason: unresolved[0]?.reason ?? 'BackendNotFound', message: unresolved.map((u) => u.message).join('; ') };
  return route.parentRefs.filter(isServiceParent).map((p) => {
    const svc = state.service(`${p.namespace}/${p.name}`);
    const ports = svc === undefined ? [] : servicePorts(p, svc);
    let accepted: RouteCondition;
    if (svc === undefined) accepted = { type: 'Accepted', status: 'False', reason: 'NoMatchingParent', message: `Service ${p.namespace}/${p.name} does not exist` };
    else if (ports.length === 0) accepted = { type: 'Accepted', status: 'False', reason: 'NoMatchingParent', message: `${describeParent(p)} matches no port of the Service` };
    else {
      const winner = ports.map((port) => conflictingGrpc(route, `${svc.key}:${port}`, state)).find((w) => w !== undefined);
      accepted = winner === undefined
        ? { type: 'Accepted', status: 'True', reason: 'Accepted', message: `attached to ${svc.key} port${ports.length === 1 ? '' : 's'} ${ports.join(', ')}` }
        : { type: 'Accepted', status: 'False', reason: 'Conflicted', message: `GRPCRoute ${winner.namespace}/${winner.name} on the same Service port takes precedence (GEP-1294)` };
    }
    return Object.freeze({ parentRef: p, controllerName: WEFT_CONTROLLER_NAME, conditions: Object.freeze([accepted, resolved]) });
  });
}

/** The status.parents entries weft wants for every route of the snapshot, by `Kind/namespace/name`. */
export function routeStatuses(state: MeshState): Map<string, readonly RouteParentStatus[]> {
  return new Map(state.routes.map((r) => [routeKey(r), routeParentStatuses(r, state)]));
}

// ---- vet ------------------------------------------------------------------------------------

function httpMatchKey(m: HttpRouteMatch): string {
  const path = m.path.type === 'PathPrefix' && m.path.value.length > 1 && m.path.value.endsWith('/') ? m.path.value.slice(0, -1) : m.path.value;
  const sorted = (xs: readonly { name: string; type: string; value: string }[]) => [...xs].map((x) => `${x.name}\0${x.type}\0${x.value}`).sort();
  return JSON.stringify([m.path.type, path, m.method ?? '', sorted(m.headers), sorted(m.queryParams)]);
}

function grpcMatchKey(m: GrpcRouteMatch): string {
  return JSON.stringify([m.method?.type ?? '', m.method?.service ?? '', m.method?.method ?? '', [...m.headers].map((h) => `${h.name}\0${h.type}\0${h.value}`).sort()]);
}

/** Matches identical to one with precedence over them on the same Service port and caller group: never used. */
function shadowed(state: MeshState, report: (route: RouteObject, field: string, message: string) => void): void {
  const seen = new Set<string>();
  for (const svc of state.services) {
    for (const sp of svc.ports) {
      const table = state.routeTable(svc, sp.port);
      for (const group of [table.producer, ...table.consumers.values()]) {
        if (group === undefined) continue;
        const first = new Map<string, string>();
        for (const route of group.routes) {
          route.rules.forEach((rule, i) => {
            const matches: readonly (HttpRouteMatch | GrpcRouteMatch)[] = rule.matches.length === 0 ? [{ method: undefined, headers: [] }] : rule.matches;
            matches.forEach((m, j) => {
              const key = 'path' in m ? httpMatchKey(m) : grpcMatchKey(m);
              const here = `${routeKey(route)} spec.rules[${i}].matches[${j}]`;
              const winner = first.get(key);
              if (winner === undefined) {
                first.set(key, here);
                return;
              }
              if (seen.has(here)) return;
              seen.add(here);
              const field = rule.matches.length === 0 ? `spec.rules[${i}]` : `spec.rules[${i}].matches[${j}]`;
              report(route, field, `is the same match as ${winner}, which takes precedence on ${svc.key}:${sp.port}; this one is never used`);
            });
          });
        }
      }
    }
  }
}

/** Problems `weft vet` reports about routes; validated routes of `state` only. */
export function routeFindings(state: MeshState): RouteFinding[] {
  const out: RouteFinding[] = [];
  const report = (route: RouteObject, field: string, message: string): void => void out.push({ route: routeKey(route), field, message });
  for (const route of state.routes) {
    route.parentRefs.forEach((p, i) => {
      const at = `spec.parentRefs[${i}]`;
      if (!isServiceParent(p)) {
        report(route, at, `is a ${p.group === '' ? '' : `${p.group}/`}${p.kind}; weft serves routes whose parent is a Service (GAMMA, group "" kind Service), so it ignores this parent`);
        return;
      }
      const svc = state.service(`${p.namespace}/${p.name}`);
      if (svc === undefined) {
        report(route, at, `names Service ${p.namespace}/${p.name}, which does not exist`);
        return;
      }
      const ports = servicePorts(p, svc);
      if (ports.length === 0) {
        report(route, at, `${describeParent(p)} matches no port of the Service (ports: ${svc.ports.map((sp) => `${sp.port}${sp.name === undefined ? '' : ` ${sp.name}`}`).join(', ')})`);
        return;
      }
      for (const port of ports) {
        const sp = svc.ports.find((x) => x.port === port);
        if (sp !== undefined && protocolFor(sp) === 'tcp') {
          report(route, at, `attaches to ${svc.key} port ${port}, declared opaque TCP (${sp.appProtocol === undefined ? `name ${String(sp.name)}` : `appProtocol ${sp.appProtocol}`}); weft does not parse its traffic as HTTP, so the route never applies there`);
        }
        const winner = conflictingGrpc(route, `${svc.key}:${port}`, state);
        if (winner !== undefined) report(route, at, `is overridden on ${svc.key}:${port} by GRPCRoute ${winner.namespace}/${winner.name} (GEP-1294: GRPCRoute wins over HTTPRoute on a Service port)`);
      }
    });
    if (route.hostnames.length > 0 && route.parentRefs.some(isServiceParent)) {
      report(route, 'spec.hostnames', 'is ignored for Service parents (GEP-1294): the route applies to traffic sent to the Service whatever its Host; match a Host header instead');
    }
    for (const r of references(route)) {
      const bad = backendProblem(r.ref, state);
      if (bad !== undefined) report(route, r.field, `${bad.message}: requests sent there get ${route.kind === 'GRPCRoute' ? 'UNAVAILABLE' : '500'}`);
    }
    route.rules.forEach((rule, i) => {
      if (rule.backendRefs.length > 0 && rule.backendRefs.every((b) => b.weight === 0)) {
        report(route, `spec.rules[${i}].backendRefs`, `weights sum to 0: every request this rule matches gets ${route.kind === 'GRPCRoute' ? 'UNAVAILABLE' : '500'}`);
      }
    });
  }
  shadowed(state, report);
  return out;
}
