// DestinationPolicy, RateLimitPolicy and FaultInjection: parsing (what is taken, what is
// refused and why, each naming its field), node slices (each agent gets what it enforces),
// the agent's decoding of them, and what `weft vet` says across objects.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTrafficPolicy } from '../../../src/model/traffic-policy-kinds.ts';
import { parseManifests } from '../../../src/model/manifests.ts';
import { crossCheck } from '../../../src/model/crosscheck.ts';
import { nodeResources, nodeSlice, type NodeResource } from '../../../src/model/node-slice.ts';
import { decodeNodeResources } from '../../../src/model/resource-codec.ts';
import { meshStateFromContent } from '../../../src/model/state.ts';
import type { TrafficPolicyKind } from '../../../src/model/traffic-policy-types.ts';
import { BASE_DOCS, state, yamlOf } from './fixture.ts';

const doc = (kind: TrafficPolicyKind, name: string, spec: object, namespace = 'shop'): Record<string, unknown> => ({ apiVersion: 'weft.dev/v1alpha1', kind, metadata: { name, namespace }, spec });

test('DestinationPolicy: Istio trafficPolicy fields, defaults for outlierDetection, http1MaxPendingRequests as an alias', () => {
  const r = parseTrafficPolicy('DestinationPolicy', doc('DestinationPolicy', 'web', {
    targetRef: { kind: 'Service', name: 'web' },
    trafficPolicy: { connectionPool: { tcp: { maxConnections: 100 }, http: { maxPendingRequests: 10, maxRequestsPerConnection: 5 } }, outlierDetection: { consecutive5xxErrors: 3, interval: '5s' } },
  }));
  assert.deepEqual(r, { issues: [], policy: {
    kind: 'DestinationPolicy', name: 'web', namespace: 'shop', targetRef: { name: 'web' },
    connectionPool: { maxConnections: 100, maxPendingRequests: 10, maxRequestsPerConnection: 5 },
    outlierDetection: { consecutive5xxErrors: 3, intervalMs: 5000, baseEjectionMs: 30_000, maxEjectionPercent: 10 },
  } });
  const alias = parseTrafficPolicy('DestinationPolicy', doc('DestinationPolicy', 'a', { targetRef: { kind: 'Service', name: 'web' }, trafficPolicy: { connectionPool: { http: { http1MaxPendingRequests: 7 } } } }));
  assert.equal(alias.policy?.kind === 'DestinationPolicy' ? alias.policy.connectionPool.maxPendingRequests : undefined, 7);
  const budget = parseTrafficPolicy('DestinationPolicy', doc('DestinationPolicy', 'b', { targetRef: { kind: 'Service', name: 'web' }, trafficPolicy: { retryBudget: { retryRatio: 0.1 } } }));
  assert.deepEqual(budget.policy?.kind === 'DestinationPolicy' ? budget.policy.retryBudget : undefined, { retryRatio: 0.1, minRetriesPerSecond: 10, ttlMs: 10_000 }, 'Linkerd\'s defaults for the fields left out');
});

test('RateLimitPolicy and FaultInjection: rates, bursts by default one second, overrides normalised, Istio percentages', () => {
  const rl = parseTrafficPolicy('RateLimitPolicy', doc('RateLimitPolicy', 'db', {
    targetRef: { kind: 'Service', name: 'db' }, total: { requestsPerSecond: 10 }, perSource: { requestsPerSecond: 2.5, burst: 5 },
    overrides: [{ principal: 'cluster.local/ns/shop/sa/web', requestsPerSecond: 100 }], connections: { perSecond: 50 }, mode: 'Shadow',
  }));
  assert.deepEqual(rl.policy, {
    kind: 'RateLimitPolicy', name: 'db', namespace: 'shop', targetRef: { name: 'db' },
    total: { requestsPerSecond: 10, burst: 10 }, perSource: { requestsPerSecond: 2.5, burst: 5 }, connections: { requestsPerSecond: 50, burst: 50 },
    overrides: [{ principal: 'spiffe://cluster.local/ns/shop/sa/web', requestsPerSecond: 100, burst: 100 }], mode: 'Shadow',
  });
  const fi = parseTrafficPolicy('FaultInjection', doc('FaultInjection', 'chaos', {
    delay: { fixedDelay: '1500ms', percentage: { value: 10 } }, abort: { grpcStatus: 'UNAVAILABLE', percentage: 50 },
  }));
  assert.deepEqual(fi.policy, { kind: 'FaultInjection', name: 'chaos', namespace: 'shop', delay: { fixedDelayMs: 1500, percentage: 10 }, abort: { httpStatus: 503, grpcStatus: 14, percentage: 50 } });
});

test('refusals name the field and say why', () => {
  const svc = { kind: 'Service', name: 'web' };
  const cases: [TrafficPolicyKind, object, string, RegExp][] = [
    ['DestinationPolicy', { trafficPolicy: { connectionPool: {} } }, 'spec.targetRef', /required/],
    ['DestinationPolicy', { targetRef: { kind: 'Deployment', name: 'x' }, trafficPolicy: { connectionPool: {} } }, 'spec.targetRef.kind', /Service/],
    ['DestinationPolicy', { targetRef: svc, trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } }, 'spec.trafficPolicy.loadBalancer', /peak EWMA/],
    ['DestinationPolicy', { targetRef: svc, trafficPolicy: { connectionPool: { http: { maxPendingRequests: 0 } } } }, 'spec.trafficPolicy.connectionPool.http.maxPendingRequests', /integer 1-/],
    ['DestinationPolicy', { targetRef: svc, trafficPolicy: { connectionPool: { http: { maxPendingRequests: 1, http1MaxPendingRequests: 2 } } } }, 'spec.trafficPolicy.connectionPool.http', /not both/],
    ['DestinationPolicy', { targetRef: svc, trafficPolicy: { outlierDetection: { interval: '10 seconds' } } }, 'spec.trafficPolicy.outlierDetection.interval', /duration/],
    ['DestinationPolicy', { targetRef: svc, trafficPolicy: {} }, 'spec.trafficPolicy', /does nothing/],
    ['DestinationPolicy', { targetRef: svc, trafficPolicy: { retryBudget: { retryRatio: -1 } } }, 'spec.trafficPolicy.retryBudget.retryRatio', /ratio 0-1000/],
    ['DestinationPolicy', { targetRef: svc, trafficPolicy: { retryBudget: { ttl: '2m' } } }, 'spec.trafficPolicy.retryBudget.ttl', /10ms to 1m/],
    ['DestinationPolicy', { host: 'web.shop.svc', targetRef: svc, trafficPolicy: { connectionPool: {} } }, 'spec.host', /targetRef/],
    ['RateLimitPolicy', { total: { requestsPerSecond: 1 } }, 'spec', /exactly one of targetRef/],
    ['RateLimitPolicy', { targetRef: svc, selector: { matchLabels: { app: 'web' } }, total: { requestsPerSecond: 1 } }, 'spec', /exactly one of targetRef/],
    ['RateLimitPolicy', { targetRef: svc }, 'spec', /limits nothing/],
    ['RateLimitPolicy', { targetRef: svc, total: { requestsPerSecond: 0 } }, 'spec.total.requestsPerSecond', /above 0/],
    ['RateLimitPolicy', { targetRef: svc, total: { requestsPerSecond: 1 }, overrides: [{ principal: 'x', requestsPerSecond: 1 }] }, 'spec.overrides[0].principal', /SPIFFE/],
    ['RateLimitPolicy', { targetRef: svc, total: { requestsPerSecond: 1 }, overrides: [{ principal: 'cluster.local/ns/a/sa/b', requestsPerSecond: 1 }] }, 'spec.overrides', /set perSource/],
    ['RateLimitPolicy', { targetRef: svc, total: { requestsPerSecond: 1 }, mode: 'DryRun' }, 'spec.mode', /Enforce, Shadow/],
    ['FaultInjection', {}, 'spec', /injects nothing/],
    ['FaultInjection', { abort: { percentage: 5 } }, 'spec.abort', /httpStatus or grpcStatus/],
    ['FaultInjection', { abort: { httpStatus: 503, percentage: 150 } }, 'spec.abort.percentage', /percentage 0-100/],
    ['FaultInjection', { abort: { grpcStatus: 'OK', percentage: 5 } }, 'spec.abort.grpcStatus', /other than OK/],
    ['FaultInjection', { delay: { exponentialDelay: '1s', percentage: 5 } }, 'spec.delay.exponentialDelay', /fixedDelay/],
  ];
  for (const [kind, spec, field, message] of cases) {
    const r = parseTrafficPolicy(kind, doc(kind, 'x', spec));
    assert.equal(r.policy, undefined, JSON.stringify(spec));
    const issue = r.issues.find((i) => i.field === field);
    assert.ok(issue, `${JSON.stringify(spec)}: ${JSON.stringify(r.issues)}`);
    assert.match(issue.message, message);
  }
});

const POLICIES = [
  doc('DestinationPolicy', 'web-pool', { targetRef: { kind: 'Service', name: 'web' }, trafficPolicy: { connectionPool: { http: { maxPendingRequests: 10 } } } }),
  doc('RateLimitPolicy', 'db-limit', { targetRef: { kind: 'Service', name: 'db' }, total: { requestsPerSecond: 10 } }),
  doc('RateLimitPolicy', 'web-limit', { selector: { matchLabels: { app: 'web' } }, perSource: { requestsPerSecond: 5 } }),
  doc('FaultInjection', 'web-chaos', { abort: { httpStatus: 503, percentage: 50 } }),
  doc('FaultInjection', 'unused', { delay: { fixedDelay: '1s', percentage: 100 } }),
  {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'shop' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'weft.dev', kind: 'FaultInjection', name: 'web-chaos' } }], backendRefs: [{ name: 'web', port: 80 }] }] },
  },
];

test('node slices: DestinationPolicy to every meshed node, RateLimitPolicy where its workloads run, FaultInjection where its route goes', () => {
  const s = state(POLICIES);
  const names = (n: string): string[] => nodeSlice(s, n).trafficPolicies.map((p) => `${p.kind}/${p.name}`);
  assert.deepEqual(names('n1'), ['DestinationPolicy/web-pool', 'FaultInjection/web-chaos', 'RateLimitPolicy/web-limit']);
  assert.deepEqual(names('n2'), ['DestinationPolicy/web-pool', 'FaultInjection/web-chaos', 'RateLimitPolicy/db-limit', 'RateLimitPolicy/web-limit']);
  // n3 hosts only legacy/new-1: a caller of web (so the pool limit and the producer route's
  // fault reach it) that hosts no rate-limited workload.
  assert.deepEqual(names('n3'), ['DestinationPolicy/web-pool', 'FaultInjection/web-chaos']);
  const bare = state(POLICIES.slice(0, 5));
  assert.ok(!nodeSlice(bare, 'n1').trafficPolicies.some((p) => p.kind === 'FaultInjection'), 'no route names them: no agent gets them');
  assert.deepEqual(names('n9'), []);
});

test('the agent decodes its traffic policies as sent; a tampered one is rejected alone', () => {
  const s = state(POLICIES);
  const wire = JSON.parse(JSON.stringify([...nodeResources(s, 'n2').values()])) as NodeResource[];
  const decoded = decodeNodeResources(wire);
  assert.deepEqual(decoded.problems, []);
  assert.deepEqual(meshStateFromContent(decoded.content).trafficPolicies, JSON.parse(JSON.stringify(nodeSlice(s, 'n2').trafficPolicies)));
  const tampered = wire.map((r) => (r.type === 'trafficpolicy' && r.name === 'RateLimitPolicy/shop/db-limit' ? { ...r, body: { ...(r.body as object), mode: 'Off' } } : r));
  const bad = decodeNodeResources(tampered);
  assert.equal(bad.problems.length, 1);
  assert.match(bad.problems[0]?.message ?? '', /mode/);
  assert.equal(bad.content.trafficPolicies?.length, 3);
});

test('vet: missing Services, a selector matching nothing, two DestinationPolicies for one Service, a route naming a missing FaultInjection', () => {
  const extra = [
    doc('DestinationPolicy', 'a-web', { targetRef: { kind: 'Service', name: 'web' }, trafficPolicy: { connectionPool: { tcp: { maxConnections: 1 } } } }),
    doc('DestinationPolicy', 'b-web', { targetRef: { kind: 'Service', name: 'web' }, trafficPolicy: { connectionPool: { tcp: { maxConnections: 2 } } } }),
    doc('DestinationPolicy', 'ghost', { targetRef: { kind: 'Service', name: 'nope' }, trafficPolicy: { connectionPool: { tcp: { maxConnections: 2 } } } }),
    doc('RateLimitPolicy', 'nobody', { selector: { matchLabels: { app: 'nobody' } }, total: { requestsPerSecond: 1 } }),
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'chaos', namespace: 'shop' },
      spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'weft.dev', kind: 'FaultInjection', name: 'missing' } }], backendRefs: [{ name: 'web', port: 80 }] }] },
    },
  ];
  const r = parseManifests([{ path: 'base.yaml', text: yamlOf(BASE_DOCS) }, { path: 'extra.yaml', text: yamlOf(extra) }], new Set(), { kubernetesSchema: true });
  assert.deepEqual(r.problems, []);
  const got = crossCheck(r, { trustDomain: 'cluster.local', origins: r.origins }).map((p) => `${p.file}: ${p.object}: ${p.field}: ${p.message}`);
  const want = [
    /extra\.yaml: DestinationPolicy\/shop\/b-web: spec\.targetRef: conflicts with DestinationPolicy shop\/a-web/,
    /extra\.yaml: DestinationPolicy\/shop\/ghost: spec\.targetRef\.name: names Service shop\/nope, which does not exist/,
    /extra\.yaml: RateLimitPolicy\/shop\/nobody: spec\.selector\.matchLabels: selects no Pod/,
    /extra\.yaml: HTTPRoute\/shop\/chaos: spec\.rules: .*FaultInjection shop\/missing, which does not exist/,
  ];
  for (const re of want) assert.equal(got.filter((l) => re.test(l)).length, 1, `${re}\n${got.join('\n')}`);
});
