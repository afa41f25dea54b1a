// `weft sim up --prometheus`: Debian's Prometheus in the underlay scrapes every agent and the
// control plane with weft-rules.yaml loaded, reachable at the printed loopback URL. Istio's
// dashboard queries return weft's data; the recording rules produce series; the control
// plane's dashboard reads from Prometheus; and every metric the Grafana dashboards and the
// rules name is one the live agents and control plane expose.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { alertNames, dashboardExpressions, metricFamilies, ruleExpressions } from '../support/dashboards.ts';
import { needsRoot } from '../support/root.ts';
import { WEFT, uniqueName, weft, type SimStatus } from '../support/sim.ts';
import { declaredFamilies } from '../../src/ui/samples.ts';
import { inNetns, node, pod } from './mesh-support.ts';

interface HttpEdge { from: string; to: string; protocol: string; requestsPerSecond: number; errorRate: number; p99Ms?: number }

interface Vector { metric: Record<string, string>; value: [number, string] }

async function query(base: string, q: string): Promise<Vector[]> {
  const res = await fetch(`${base}api/v1/query?query=${encodeURIComponent(q)}`);
  const body = await res.json() as { status: string; error?: string; data: { result: Vector[] } };
  assert.equal(body.status, 'success', `${q}: ${body.error ?? ''}`);
  return body.data.result;
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(1000);
  }
}

test('sim up --prometheus: scrapes the mesh, rules loaded, Istio queries answer with weft data', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['prometheus', 'curl', 'nsenter'])) return;
  const name = uniqueName('pm');
  t.after(async () => {
    const r = await weft(['sim', 'down', '--name', name]);
    if (r.status !== 0) process.stderr.write(`sim down ${name} failed: ${r.stderr}\n`);
  });
  const up = await weft(['sim', 'up', '--name', name, '--nodes', '2', '--pods-per-node', '2', '--prometheus']);
  assert.equal(up.status, 0, up.stderr);
  const url = /prometheus: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(up.stdout)?.[1];
  assert.ok(url !== undefined, `sim up printed a loopback Prometheus URL: ${up.stdout}`);
  const s = JSON.parse((await weft(['sim', 'status', '--name', name, '--json'])).stdout) as SimStatus & { prometheusUrl?: string };
  assert.equal(s.prometheusUrl, url);

  // Bounded cross-node traffic: echo-1-0 calls hello-2-1 (mutual TLS) for up to 2 minutes: HTTP
  // requests to its server and, every fourth round, one more to a port nothing listens on (the
  // agents answer 503): one request in five fails. Opaque TCP too (curl's telnet bytes are not
  // HTTP, so the agents splice them), for the TCP panels: HTTP connections are reported per request.
  const target = pod(s, 'hello-2-1');
  const traffic = spawn(WEFT, ['sim', 'exec', '--name', name, 'echo-1-0', '--', 'sh', '-c',
    `i=0; while [ $i -lt 600 ]; do curl -s -m 2 -o /dev/null http://${target.ip}:8080/; `
    + `[ $((i % 4)) -eq 0 ] && curl -s -m 2 -o /dev/null http://${target.ip}:8089/; `
    + `printf 'opaque\\r\\n' | curl -s -m 1 -o /dev/null telnet://${target.ip}:8080; i=$((i+1)); sleep 0.2; done`], { stdio: 'ignore' });
  t.after(() => traffic.kill('SIGTERM'));

  // Every agent and the control plane are scraped.
  const targets = await eventually('all targets up', async () => {
    const res = await fetch(`${url}api/v1/targets`);
    const body = await res.json() as { data: { activeTargets: { labels: Record<string, string>; health: string }[] } };
    const list = body.data.activeTargets.map((x) => `${x.labels.job}/${x.labels.instance}=${x.health}`).sort();
    return list.length === 3 && list.every((x) => x.endsWith('=up')) ? list : undefined;
  });
  assert.deepEqual(targets, ['weft-agent/node-1=up', 'weft-agent/node-2=up', 'weft-control/control=up']);

  // The rules file is loaded: every alert of weft-rules.yaml is known to Prometheus.
  const rules = await (await fetch(`${url}api/v1/rules`)).json() as { data: { groups: { rules: { name: string; type: string }[] }[] } };
  const loaded = rules.data.groups.flatMap((g) => g.rules.filter((r) => r.type === 'alerting').map((r) => r.name)).sort();
  assert.deepEqual(loaded, alertNames().sort());

  // Istio's dashboard queries (istio-mesh / istio-workload TCP panels) return weft's data.
  const bySecurity = await eventually('connection rate by security policy', async () => {
    const v = await query(url, 'sum(rate(istio_tcp_connections_opened_total{reporter="source"}[1m])) by (source_workload, destination_workload, connection_security_policy)');
    const row = v.find((x) => x.metric.source_workload === 'echo-1-0' && x.metric.destination_workload === 'hello-2-1');
    return row !== undefined && Number(row.value[1]) > 0 ? row : undefined;
  });
  assert.equal(bySecurity.metric.connection_security_policy, 'mutual_tls');
  // The two agents are scraped at different moments: the destination's bytes may show a scrape later.
  await eventually('bytes the destination agent received from echo-1-0', async () => {
    const v = await query(url, 'sum(rate(istio_tcp_received_bytes_total{reporter="destination", destination_workload=~"hello-2-1"}[1m])) by (source_workload)');
    return v.some((x) => x.metric.source_workload === 'echo-1-0' && Number(x.value[1]) > 0) ? v : undefined;
  });
  await eventually('bytes the source agent sent to hello-2-1', async () => {
    const v = await query(url, 'sum(irate(istio_tcp_sent_bytes_total{reporter="source", destination_workload="hello-2-1"}[1m]))');
    return Number(v[0]?.value[1] ?? 0) > 0 ? v : undefined;
  });
  // Istio's HTTP panels (istio-mesh, istio-service and istio-workload dashboards) over request metrics.
  const ok = await eventually('non-5xx request rate by destination workload', async () => {
    const v = await query(url, 'sum(rate(istio_requests_total{reporter="destination", response_code!~"5.."}[1m])) by (destination_workload)');
    const row = v.find((x) => x.metric.destination_workload === 'hello-2-1');
    return row !== undefined && Number(row.value[1]) > 0 ? Number(row.value[1]) : undefined;
  });
  const byCode = await eventually('request rate by response code', async () => {
    const v = await query(url, 'sum(rate(istio_requests_total{reporter="source", source_workload="echo-1-0", destination_workload="hello-2-1"}[1m])) by (response_code, connection_security_policy)');
    return v.some((x) => x.metric.response_code === '503') && v.some((x) => x.metric.response_code === '200') ? v : undefined;
  });
  assert.ok(byCode.every((x) => x.metric.connection_security_policy === 'mutual_tls'), JSON.stringify(byCode));
  // Global success rate, as the mesh dashboard's "Global Success Rate (non-5xx responses)" panel.
  const success = Number((await query(url, 'sum(rate(istio_requests_total{reporter="source", response_code!~"5.."}[1m])) / sum(rate(istio_requests_total{reporter="source"}[1m]))'))[0]?.value[1]);
  assert.ok(success > 0.5 && success < 1, `success rate with one request in five refused: ${success} (non-5xx ${ok}/s)`);
  const p99 = await query(url, 'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination", destination_workload="hello-2-1"}[1m])) by (le))');
  assert.ok(Number(p99[0]?.value[1]) > 0, `p99 request duration: ${JSON.stringify(p99)}`);
  const perSource = await query(url, 'round(sum(irate(istio_requests_total{reporter="destination", destination_workload_namespace="demo", destination_workload="hello-2-1"}[1m])) by (source_workload, source_workload_namespace, response_code), 0.001)');
  assert.ok(perSource.some((x) => x.metric.source_workload === 'echo-1-0' && x.metric.source_workload_namespace === 'demo'), JSON.stringify(perSource));

  // The Istio-style recording rules (15 s interval) produce the workload: series.
  await eventually('workload:istio_tcp_connections_opened_total', async () => {
    const v = await query(url, 'sum(workload:istio_tcp_connections_opened_total{destination_workload="hello-2-1"})');
    return v.length > 0 && Number(v[0]?.value[1]) > 0 ? v : undefined;
  }, 60_000);
  // No alert fires on a healthy mesh (the two nodes talk mutual TLS; certificates are fresh).
  const firing = await query(url, 'ALERTS{alertstate="firing"}');
  assert.deepEqual(firing.map((a) => a.metric.alertname), []);

  // The control plane's dashboard reads from this Prometheus.
  const underlay = `weft-${name}-underlay`;
  const model = await eventually('dashboard from Prometheus', async () => {
    const r = await inNetns(underlay, ['curl', '-s', '-m', '10', 'http://127.0.0.1:15080/api/mesh']);
    const m = JSON.parse(r.stdout) as { source: string; note?: string; topology: { edges: { from: string; to: string; security: string; connectionsPerSecond: number }[] } };
    return m.source === 'prometheus' && m.note === undefined && m.topology.edges.some((e) => e.from === 'workload:demo/echo-1-0' && e.to === 'workload:demo/hello-2-1' && e.connectionsPerSecond > 0) ? m : undefined;
  });
  const edge = model.topology.edges.find((e) => e.from === 'workload:demo/echo-1-0' && e.to === 'workload:demo/hello-2-1');
  assert.equal(edge?.security, 'mutual_tls');
  // The HTTP edge carries request rate, error rate (the 503s) and p99 from istio_request* in Prometheus.
  const http = await eventually('the HTTP edge from Prometheus', async () => {
    const r = await inNetns(underlay, ['curl', '-s', '-m', '10', 'http://127.0.0.1:15080/api/mesh']);
    const m = JSON.parse(r.stdout) as { source: string; topology: { edges: HttpEdge[] } };
    const e = m.topology.edges.find((x) => x.from === 'workload:demo/echo-1-0' && x.to === 'workload:demo/hello-2-1');
    return m.source === 'prometheus' && e !== undefined && e.protocol === 'http' && e.requestsPerSecond > 0 && e.errorRate > 0 && (e.p99Ms ?? 0) > 0 ? e : undefined;
  });
  assert.ok(http.errorRate > 0 && http.errorRate < 0.5, `error rate with one request in five refused: ${http.errorRate}`);

  // The Grafana dashboards and the rules use only metrics weft emits: every family they name is
  // declared by a live agent's or the control plane's /metrics (or is Prometheus's own `up`).
  const n1 = node(s, 'node-1');
  const agentText = (await inNetns(n1.netns, ['curl', '-s', '-m', '5', `http://${n1.ip}:15020/metrics`])).stdout;
  const controlText = (await inNetns(underlay, ['curl', '-s', '-m', '5', 'http://198.18.0.2:15014/metrics'])).stdout;
  const exposed = new Set([...declaredFamilies(agentText), ...declaredFamilies(controlText), 'up', 'ALERTS']);
  assert.ok(exposed.has('istio_tcp_connections_opened_total') && exposed.has('weft_control_nacks_total'), 'both scrapes read');
  const recorded = new Set(ruleExpressions().flatMap((r) => (r.record === undefined ? [] : [r.record])));
  const missing: string[] = [];
  for (const e of [...dashboardExpressions(), ...ruleExpressions()]) {
    for (const f of metricFamilies(e.expr, recorded)) if (!exposed.has(f)) missing.push(`${e.where}: ${f}`);
  }
  assert.deepEqual(missing, [], 'metrics named by dashboards or rules that weft does not expose');
});
