// OpenTelemetry in the simulator: `weft sim up` with OTEL_* in its environment passes them to
// the agents and the control plane; an OTLP receiver (test/support/otlp-receiver.ts) runs in
// the underlay namespace. One plain TCP connection across nodes yields one span per agent in
// one trace: the source agent's CLIENT span, and the destination agent's SERVER span whose
// parent is the source's (the context rode the tunnel's CONNECT as `traceparent`). One HTTP
// request through a Service with an HTTPRoute, sent by curl with its own `traceparent`,
// yields the source agent's CLIENT span (child of curl's), the destination agent's SERVER
// span (child of the CLIENT one), and the backend receives a `traceparent` of that trace
// whose parent is the SERVER span; with OTEL_PROPAGATORS naming b3multi, a request carrying
// only Zipkin's X-B3-* headers continues its trace the same way.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { stringify } from 'yaml';

import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName, type SimStatus } from '../support/sim.ts';
import type { ReceivedSpan } from '../support/otlp-receiver.ts';
import { clientInPod, eventually, nodeGet, pod, runClient } from './mesh-support.ts';

const RECEIVER = join(import.meta.dirname, '..', 'support', 'otlp-receiver.ts');
const COLLECTOR = '198.18.0.2:4318';

test('a TCP connection and an HTTP request across nodes: spans from both agents in one trace', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter', 'curl'])) return;
  const otel = {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://${COLLECTOR}`, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_BSP_SCHEDULE_DELAY: '200',
    OTEL_PROPAGATORS: 'tracecontext,baggage,b3multi',
  };
  Object.assign(process.env, otel);
  t.after(() => { for (const k of Object.keys(otel)) delete process.env[k]; });
  const name = uniqueName('tr');
  const s: SimStatus = await simCluster(t, name, ['--nodes', '2', '--pods-per-node', '2']);
  for (const k of Object.keys(otel)) delete process.env[k];

  // weft sim up handed OTEL_* to every mesh process.
  const state = JSON.parse(readFileSync(`/run/weft/sim/${name}/state.json`, 'utf8')) as { mesh_processes: Record<string, number> };
  for (const [component, pid] of Object.entries(state.mesh_processes)) {
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    assert.ok(environ.includes(`OTEL_EXPORTER_OTLP_ENDPOINT=http://${COLLECTOR}`), `${component} got OTEL_EXPORTER_OTLP_ENDPOINT`);
  }

  const spans: ReceivedSpan[] = [];
  const receiver = spawn('nsenter', [`--net=/run/netns/weft-${name}-underlay`, process.execPath, RECEIVER, ...COLLECTOR.split(':')], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => receiver.kill('SIGTERM'));
  await new Promise<void>((resolve, reject) => {
    receiver.once('exit', (code) => reject(new Error(`the OTLP receiver exited (${code})`)));
    createInterface({ input: receiver.stdout }).on('line', (line) => {
      const j = JSON.parse(line) as ReceivedSpan | { listening: number };
      if ('listening' in j) resolve();
      else spans.push(j);
    });
  });

  await t.test('TCP: one span per agent, one trace', async () => {
    // A plain TCP exchange (not HTTP) from echo-1-0 on node-1 to hello-2-1 on node-2, port 9000.
    const server = pod(s, 'hello-2-1');
    const listener = clientInPod(name, 'hello-2-1', 'halfclose-server', { port: 9000 });
    t.after(() => listener.stop());
    await listener.waitFor((l) => l.event === 'listening', 20_000, 'halfclose server');
    const result = await runClient({ cluster: name, pod: 'echo-1-0' }, 'halfclose', { host: server.ip, port: 9000, bytes: 5000, seed: 'trace' });
    assert.equal(result.ending, 'end');
    assert.equal(result.received, 5000);

    const deadline = Date.now() + 30_000;
    const ours = (): ReceivedSpan[] => spans.filter((x) => x.attributes['server.address'] === server.ip && x.attributes['server.port'] === 9000);
    while (ours().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const mine = ours();
    const client = mine.find((x) => x.attributes['weft.node'] === 'node-1');
    const dest = mine.find((x) => x.attributes['weft.node'] === 'node-2');
    assert.ok(client !== undefined && dest !== undefined, `spans from both agents: ${JSON.stringify(spans).slice(0, 3000)}`);
    assert.equal(mine.length, 2, 'one span per agent for the one connection');
    assert.equal(client.kind, 3, 'CLIENT on the source agent');
    assert.equal(dest.kind, 2, 'SERVER on the destination agent');
    assert.equal(dest.traceId, client.traceId, 'one trace');
    assert.equal(dest.parentSpanId, client.spanId, 'the destination span is the child of the source span');
    assert.equal(client.resource['service.name'], 'weft-agent');
    assert.equal(client.attributes['weft.connection_security_policy'], 'mutual_tls');
    assert.equal(client.attributes['weft.source.workload'], 'echo-1-0');
    assert.equal(dest.attributes['weft.destination.workload'], 'hello-2-1');
    assert.equal(dest.attributes['weft.source.principal'], 'spiffe://cluster.local/ns/demo/sa/echo');
    assert.equal(client.attributes['weft.bytes_received'], 5000, 'request bytes');
    assert.equal(dest.attributes['weft.bytes_sent'], 5000, 'response bytes');
    assert.equal(client.attributes['weft.response_flags'], '-');
  });

  await t.test('HTTP: CLIENT span, SERVER span, and the backend continues the trace', async () => {
    // A route on the hello Service, so the CLIENT span names the route that decided.
    const live = join('/run/weft/sim', name, 'manifests');
    assert.ok(readdirSync(live).length > 0, `the simulator keeps its manifests in ${live}`);
    writeFileSync(join(live, 'trace-route.yaml'), stringify({
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'hello-traced', namespace: 'demo' },
      spec: { parentRefs: [{ group: '', kind: 'Service', name: 'hello', port: 80 }], rules: [{ backendRefs: [{ name: 'hello', port: 80 }] }] },
    }));
    const routed = await eventually(async () => {
      const r = await nodeGet(s, 'node-1', 'http://127.0.0.1:15000/config_dump');
      return /"hello-traced"/.test(r.body) ? true : undefined;
    }, 30_000);
    assert.equal(routed, true, 'node-1 has the route');
    const hello = s.services.find((x) => x.name === 'hello') ?? assert.fail('no hello Service');

    // curl from echo-1-0 to the hello VIP until one request lands on hello-2-1 (the other node).
    const send = async (headers: Record<string, string>): Promise<{ pod: string; seen: Record<string, string> }> => {
      const args = ['curl', '-sS', '-o', '/dev/null', '-D', '-', '--max-time', '10', '-H', 'x-weft-echo: 1'];
      for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
      const r = await inPod(name, 'echo-1-0', [...args, `http://${hello.vip}/traced/path?q=1`]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^HTTP\/1\.1 200/, r.stdout);
      const header = (h: string): string => new RegExp(`^${h}: (.*)\r$`, 'mi').exec(r.stdout)?.[1] ?? '';
      return { pod: header('x-weft-pod'), seen: JSON.parse(header('x-weft-request-headers')) as Record<string, string> };
    };
    const acrossNodes = async (headers: () => Record<string, string>): Promise<{ sent: Record<string, string>; seen: Record<string, string> }> => {
      for (let i = 0; i < 30; i++) {
        const sent = headers();
        const r = await send(sent);
        if (r.pod === 'hello-2-1') return { sent, seen: r.seen };
      }
      return assert.fail('30 requests to the hello Service and none reached hello-2-1');
    };
    const spansOf = async (trace: string, what: string): Promise<{ client: ReceivedSpan; server: ReceivedSpan; all: ReceivedSpan[] }> => {
      // Every request sent (also those answered on node-1) has its own trace: this one's, across nodes.
      const found = await eventually(() => {
        const all = spans.filter((x) => x.traceId === trace);
        const client = all.find((x) => x.kind === 3 && x.attributes['weft.node'] === 'node-1');
        const server = all.find((x) => x.kind === 2 && x.attributes['weft.node'] === 'node-2');
        return client !== undefined && server !== undefined ? { client, server, all } : undefined;
      }, 30_000);
      return found ?? assert.fail(`${what}: no CLIENT span on node-1 and SERVER span on node-2 in trace ${trace}: ${JSON.stringify(spans.filter((x) => x.traceId === trace))}`);
    };
    const hex = (bytes: number): string => randomBytes(bytes).toString('hex');

    // W3C trace context.
    const w3c = await acrossNodes(() => ({ traceparent: `00-${hex(16)}-${hex(8)}-01`, tracestate: 'curl=1' }));
    const [, trace, parent] = w3c.sent.traceparent?.split('-') ?? [];
    assert.ok(trace !== undefined && parent !== undefined);
    const { client, server, all } = await spansOf(trace, 'traceparent');
    assert.equal(all.filter((x) => x.attributes['url.path'] !== undefined).length, 2, `one request span per agent: ${JSON.stringify(all)}`);
    assert.equal(client.parentSpanId, parent, 'the CLIENT span continues curl\'s');
    assert.equal(server.parentSpanId, client.spanId, 'the SERVER span is the child of the CLIENT span');
    assert.equal(w3c.seen.traceparent, `00-${trace}-${server.spanId}-01`, 'the backend continues the trace, its parent the SERVER span');
    assert.equal(w3c.seen.tracestate, 'curl=1', 'tracestate carried through');
    for (const x of [client, server]) {
      assert.equal(x.resource['service.name'], 'weft-agent');
      assert.equal(x.attributes['http.request.method'], 'GET');
      assert.equal(x.attributes['http.response.status_code'], 200);
      assert.equal(x.attributes['url.path'], '/traced/path');
      assert.equal(x.attributes['weft.source.workload'], 'echo-1-0');
      assert.equal(x.attributes['weft.destination.workload'], 'hello-2-1');
      assert.equal(x.attributes['weft.source.principal'], 'spiffe://cluster.local/ns/demo/sa/echo');
      assert.equal(x.attributes['weft.destination.principal'], 'spiffe://cluster.local/ns/demo/sa/hello');
      assert.equal(x.attributes['weft.connection_security_policy'], 'mutual_tls');
      assert.equal(x.attributes['weft.response_flags'], '-');
      assert.equal(x.status, 0, 'not an error');
    }
    assert.equal(client.attributes['weft.node'], 'node-1');
    assert.equal(server.attributes['weft.node'], 'node-2');
    assert.equal(client.attributes['server.address'], `hello.demo.svc.cluster.local`, 'the CLIENT span names the Service it called');
    assert.equal(client.attributes['network.peer.address'], pod(s, 'hello-2-1').ip, 'the CLIENT span\'s peer: the endpoint chosen');
    assert.equal(server.attributes['network.peer.address'], pod(s, 'echo-1-0').ip, 'the SERVER span\'s peer: the client');
    assert.equal(client.attributes['weft.route'], 'demo/hello-traced');
    assert.equal(client.name, 'GET demo/hello-traced');

    // B3 (OTEL_PROPAGATORS names b3multi): Zipkin's headers alone start the trace, and go on beside traceparent.
    const b3 = await acrossNodes(() => ({ 'X-B3-TraceId': hex(16), 'X-B3-SpanId': hex(8), 'X-B3-Sampled': '1' }));
    const b3trace = b3.sent['X-B3-TraceId'] ?? '';
    const b = await spansOf(b3trace, 'X-B3-*');
    assert.equal(b.client.parentSpanId, b3.sent['X-B3-SpanId'], 'the CLIENT span continues the B3 context');
    assert.equal(b.server.parentSpanId, b.client.spanId);
    assert.equal(b3.seen['x-b3-traceid'], b3trace, 'the backend gets B3 headers of the same trace');
    assert.equal(b3.seen['x-b3-spanid'], b.server.spanId, 'their span: the SERVER span');
    assert.equal(b3.seen.traceparent, `00-${b3trace}-${b.server.spanId}-01`, 'and traceparent beside them');
  });
});
