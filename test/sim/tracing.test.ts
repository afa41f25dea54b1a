// OpenTelemetry in the simulator: `weft sim up` with OTEL_* in its environment passes them to
// the agents and the control plane; an OTLP receiver (test/support/otlp-receiver.ts) runs in
// the underlay namespace. One plain TCP connection across nodes yields one span per agent in
// one trace: the source agent's CLIENT span, and the destination agent's SERVER span whose
// parent is the source's (the context rode the tunnel's CONNECT as `traceparent`).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';

import { needsRoot } from '../support/root.ts';
import { simCluster, uniqueName, type SimStatus } from '../support/sim.ts';
import type { ReceivedSpan } from '../support/otlp-receiver.ts';
import { clientInPod, pod, runClient } from './mesh-support.ts';

const RECEIVER = join(import.meta.dirname, '..', 'support', 'otlp-receiver.ts');
const COLLECTOR = '198.18.0.2:4318';

test('a TCP connection across nodes: one span per agent, one trace', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter'])) return;
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://${COLLECTOR}`, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_BSP_SCHEDULE_DELAY: '200' };
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
