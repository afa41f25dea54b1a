// The dashboard's pure parts with tables of cases: the text-format reader, rates between two
// scrapes, histogram quantiles, the topology (Kiali's source -> service -> workload, security
// and health per edge, plaintext into enrolled workloads), the control-plane view and banners.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { banners } from '../../../src/ui/banners.ts';
import { configDigest, controlView } from '../../../src/ui/control-view.ts';
import { groupScrape, histogramQuantile, ratesBetween, type MeshRates } from '../../../src/ui/mesh-rates.ts';
import { declaredFamilies, parseSamples } from '../../../src/ui/samples.ts';
import { securityView } from '../../../src/ui/security-view.ts';
import { healthOf, topology, type TopologyState } from '../../../src/ui/topology.ts';
import type { Workload } from '../../../src/model/types.ts';

const wl = (ns: string, name: string, enrolled: boolean, node = 'node-1'): Workload => ({
  key: `${ns}/${name}`, name, namespace: ns, serviceAccount: 'default', node, ip: undefined, labels: {}, enrolled,
  identity: `spiffe://cluster.local/ns/${ns}/sa/default`,
});

const STATE: TopologyState = {
  workloads: [wl('demo', 'client', true), wl('demo', 'server', true, 'node-2'), wl('legacy', 'old', false, 'node-2')],
  services: [{ key: 'demo/server', name: 'server', namespace: 'demo', vip: '198.19.0.10', ports: [], endpointSource: 'selector', endpoints: [] }],
};

const edgeLabels = (reporter: string, src: string, dst: string, service: string, security: string): string =>
  `reporter="${reporter}",source_workload="${src.split('/')[1]}",source_workload_namespace="${src.split('/')[0]}",destination_service="${service}",destination_workload="${dst.split('/')[1]}",destination_workload_namespace="${dst.split('/')[0]}",connection_security_policy="${security}"`;

function scrapeText(n: number): string {
  const mtls = edgeLabels('source', 'demo/client', 'demo/server', 'server.demo.svc.cluster.local', 'mutual_tls');
  const plain = edgeLabels('destination', 'legacy/old', 'demo/server', 'unknown', 'none');
  return [
    '# HELP istio_tcp_connections_opened_total TCP connections opened',
    '# TYPE istio_tcp_connections_opened_total counter',
    `istio_tcp_connections_opened_total{${mtls},response_flags="-"} ${10 * n}`,
    `istio_tcp_connections_opened_total{${plain},response_flags="-"} ${2 * n}`,
    `istio_tcp_sent_bytes_total{${mtls},response_flags="-"} ${1000 * n}`,
    `istio_tcp_received_bytes_total{${mtls},response_flags="-"} ${500 * n}`,
    `istio_tcp_connections_closed_total{${mtls},response_flags="-"} ${9 * n}`,
    `istio_tcp_connections_closed_total{${mtls},response_flags="UF"} ${1 * n}`,
    `weft_tcp_connection_duration_seconds_bucket{reporter="source",source_workload="client",source_workload_namespace="demo",destination_workload="server",destination_workload_namespace="demo",destination_service="server.demo.svc.cluster.local",response_flags="-",le="0.01"} ${5 * n}`,
    `weft_tcp_connection_duration_seconds_bucket{reporter="source",source_workload="client",source_workload_namespace="demo",destination_workload="server",destination_workload_namespace="demo",destination_service="server.demo.svc.cluster.local",response_flags="-",le="0.1"} ${10 * n}`,
    `weft_tcp_connection_duration_seconds_bucket{reporter="source",source_workload="client",source_workload_namespace="demo",destination_workload="server",destination_workload_namespace="demo",destination_service="server.demo.svc.cluster.local",response_flags="-",le="+Inf"} ${10 * n}`,
    'weft_agent_certificate_expiry_timestamp_seconds{identity="spiffe://cluster.local/ns/demo/sa/default"} 3600',
    'weft_agent_control_connected 1',
    'weft_policy_denials_total{reporter="source"} 0',
  ].join('\n');
}

function ratesOverTen(): MeshRates {
  const prev = new Map([['node-1', groupScrape(parseSamples(scrapeText(1)), 'node-1', 0)]]);
  const cur = new Map([['node-1', groupScrape(parseSamples(scrapeText(2)), 'node-1', 10_000)]]);
  return ratesBetween(prev, cur, [], 10_000);
}

test('parseSamples reads labels with escapes and skips comments and junk', () => {
  const s = parseSamples('# HELP x y\nx{a="1",b="q\\"uote"} 3\ny 4.5\nnot a line\nz{} NaN\n');
  assert.deepEqual(s.map((x) => [x.name, x.labels, x.value]), [['x', { a: '1', b: 'q"uote' }, 3], ['y', {}, 4.5], ['z', {}, Number.NaN]]);
  assert.deepEqual(declaredFamilies('# TYPE a counter\n# HELP a h\n# TYPE b gauge\n'), ['a', 'b']);
});

test('rates between two scrapes; a restarted agent counts from zero; a first scrape has rate 0', () => {
  const r = ratesOverTen();
  assert.equal(r.windowSeconds, 10);
  const opened = r.opened.find((x) => x.labels.connection_security_policy === 'mutual_tls');
  assert.equal(opened?.rate, 1);
  assert.equal(opened?.total, 20);
  const restarted = ratesBetween(
    new Map([['n', groupScrape(parseSamples(scrapeText(5)), 'n', 0)]]), new Map([['n', groupScrape(parseSamples(scrapeText(1)), 'n', 10_000)]]), [], 10_000);
  assert.equal(restarted.opened.find((x) => x.labels.connection_security_policy === 'mutual_tls')?.rate, 1);
  const first = ratesBetween(new Map(), new Map([['n', groupScrape(parseSamples(scrapeText(1)), 'n', 0)]]), [], 0);
  assert.ok(first.opened.every((x) => x.rate === 0));
});

test('histogramQuantile interpolates within a bucket, as PromQL does', () => {
  const cases: Array<[number, { le: number; rate: number }[], number | undefined]> = [
    [0.5, [{ le: 10, rate: 5 }, { le: 100, rate: 10 }, { le: Infinity, rate: 10 }], 10],
    [0.99, [{ le: 10, rate: 5 }, { le: 100, rate: 10 }, { le: Infinity, rate: 10 }], 98.2],
    [0.99, [{ le: 1, rate: 0 }, { le: Infinity, rate: 0 }], undefined],
    [0.99, [{ le: 1, rate: 1 }, { le: Infinity, rate: 2 }], 1],
  ];
  for (const [q, b, want] of cases) {
    const got = histogramQuantile(q, b);
    if (want === undefined) assert.equal(got, undefined);
    else assert.ok(Math.abs((got ?? -1) - want) < 1e-9, `${q}: ${got} != ${want}`);
  }
});

test('topology: source -> service -> workload, mTLS and plaintext edges, health, p99', () => {
  const g = topology(STATE, ratesOverTen());
  const byId = new Map(g.edges.map((e) => [e.id, e]));
  const toSvc = byId.get('workload:demo/client->service:server.demo.svc.cluster.local');
  const fromSvc = byId.get('service:server.demo.svc.cluster.local->workload:demo/server');
  const plain = byId.get('workload:legacy/old->workload:demo/server');
  assert.equal(toSvc?.security, 'mutual_tls');
  assert.equal(fromSvc?.security, 'mutual_tls');
  assert.equal(toSvc?.connectionsPerSecond, 1);
  assert.equal(toSvc?.bytesPerSecond, 150);
  assert.equal(toSvc?.errorRate, 0.1, 'one in ten connections ended with a flag');
  assert.equal(toSvc?.health, 'degraded');
  assert.ok(Math.abs((toSvc?.p99Ms ?? 0) - 98.2) < 1e-6, `p99 ${toSvc?.p99Ms}`);
  assert.equal(plain?.security, 'none');
  assert.equal(plain?.plaintextIntoEnrolled, true);
  assert.equal(plain?.reporter, 'destination');
  assert.equal(toSvc?.plaintextIntoEnrolled, false);
  assert.ok(g.nodes.some((n) => n.id === 'namespace:legacy' && n.kind === 'namespace'));
  assert.equal(g.nodes.find((n) => n.id === 'workload:legacy/old')?.parent, 'namespace:legacy');
  assert.equal(g.nodes.find((n) => n.id === 'workload:legacy/old')?.enrolled, false);
});

test('topology: source-reported plaintext to an enrolled pod is node-local, not a warning', () => {
  const samples = parseSamples(`istio_tcp_connections_opened_total{${edgeLabels('source', 'demo/client', 'demo/server', 'unknown', 'none')}} 4`);
  const r = ratesBetween(new Map(), new Map([['node-1', groupScrape(samples, 'node-1', 0)]]), [], 0);
  const e = topology(STATE, r).edges[0];
  assert.equal(e?.nodeLocal, true);
  assert.equal(e?.plaintextIntoEnrolled, false);
  assert.equal(e?.connections, 4);
  assert.equal(e?.health, 'idle');
});

test('healthOf: Kiali thresholds', () => {
  const cases: Array<[number, boolean, string]> = [[0, true, 'healthy'], [0.0009, true, 'healthy'], [0.001, true, 'degraded'], [0.2, true, 'failing'], [0.5, false, 'idle']];
  for (const [rate, active, want] of cases) assert.equal(healthOf(rate, active), want, `${rate}`);
});

test('controlView: ACK, PENDING, NACK, DISCONNECTED; banners mirror the alerts', () => {
  const desired = new Map([['workload/a', 'v1'], ['trust/bundle', 't1']]);
  const view = controlView({
    nodes: ['n1', 'n2', 'n3', 'n4'],
    streams: [
      { node: 'n1', peer: 'p', connectedAt: 1, acked: new Map(desired), pendingPushes: 0 },
      { node: 'n2', peer: 'p', connectedAt: 1, acked: new Map([['workload/a', 'v0']]), pendingPushes: 1 },
      { node: 'n3', peer: 'p', connectedAt: 1, acked: new Map(desired), pendingPushes: 0 },
    ],
    desired: () => desired,
    rejected: (n) => (n === 'n3' ? [{ key: 'workload/a', version: 'v2', message: 'bad port' }] : []),
    manifestProblems: ['x.yaml: Pod/a: spec.nodeName: bad'],
    unreachable: new Set(['n1']),
  });
  assert.deepEqual(view.agents.map((a) => [a.node, a.state, a.ackedResources, a.desiredResources]), [
    ['n1', 'ACK', 2, 2], ['n2', 'PENDING', 0, 2], ['n3', 'NACK', 2, 2], ['n4', 'DISCONNECTED', 0, 2],
  ]);
  assert.equal(view.agents[0]?.configVersion, configDigest(desired));
  const rates = { ...ratesOverTen(), controlConnected: [{ name: 'weft_agent_control_connected', labels: { instance: 'n2' }, value: 0 }] };
  const sec = securityView(STATE, rates, topology(STATE, rates), { revoked: [], now: 0 });
  const alerts = banners(rates, sec, view).map((b) => b.alert).sort();
  assert.deepEqual(alerts, [
    'WeftAgentConfigRejected', 'WeftAgentDown', 'WeftAgentDown', 'WeftCertificateNearExpiry', 'WeftControlPlaneUnreachable', 'WeftPlaintextIntoEnrolledWorkload',
  ]);
});

test('securityView: enrollment per namespace, default PeerAuthentication, certificates by time left', () => {
  const rates = ratesOverTen();
  const sec = securityView(STATE, rates, topology(STATE, rates), {
    revoked: [{ serial: 'ab' }], now: 0, peerAuthenticationMode: (w) => (w.name === 'server' ? 'STRICT' : undefined),
  });
  assert.deepEqual(sec.namespaces, [{ namespace: 'demo', workloads: 2, enrolled: 2 }, { namespace: 'legacy', workloads: 1, enrolled: 0 }]);
  assert.deepEqual(sec.workloads.map((w) => [w.name, w.mode, w.modeFromPolicy]), [['client', 'PERMISSIVE', false], ['server', 'STRICT', true], ['old', 'PERMISSIVE', false]]);
  assert.equal(sec.certificates[0]?.secondsLeft, 3600);
  assert.equal(sec.plaintextEdges.length, 1);
  assert.deepEqual(sec.revoked, [{ serial: 'ab' }]);
});
