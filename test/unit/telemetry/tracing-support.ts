// Shared by the tracing tests (one protocol per file: the OpenTelemetry API's globals are
// per process): two connection tracers standing in for the source and destination agents, the
// source's traceHeaders carried to the destination as the tunnel's CONNECT would carry them.

import assert from 'node:assert/strict';
import { Registry } from 'prom-client';

import { ConnectionTracer, startTracing } from '../../../src/telemetry/index.ts';
import type { ReceivedSpan } from '../../support/otlp-receiver.ts';

export function setOtelEnv(endpoint: string, protocol: string): void {
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = endpoint;
  process.env.OTEL_EXPORTER_OTLP_PROTOCOL = protocol;
  process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
  process.env.OTEL_SERVICE_NAME = 'weft-agent-test';
}

/** One TCP connection through two agents; returns the registry and the CONNECT headers. */
export async function tracedConnection(o: { shutdown?: boolean } = {}): Promise<{ registry: Registry; headers: Record<string, string>; shutdown: () => Promise<void> }> {
  const registry = new Registry();
  const tracing = startTracing({ serviceName: 'weft-agent', registry });
  assert.ok(tracing !== undefined, 'OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on');
  const source = new ConnectionTracer(tracing, { node: 'node-1' }).open();
  const headers = source.traceHeaders();
  assert.match(headers.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  source.identify({
    reporter: 'source', source: { workload: 'client', namespace: 'demo', address: '198.18.1.10:40000' },
    destination: { workload: 'server', namespace: 'demo', address: '198.18.2.11:8080', principal: 'spiffe://cluster.local/ns/demo/sa/server' },
    service: { host: 'server.demo.svc.cluster.local', name: 'server', namespace: 'demo' }, security: 'mutual_tls',
  });
  const dest = new ConnectionTracer(tracing, { node: 'node-2' }).open({ ':method': 'CONNECT', ':authority': '198.18.2.11:8080', ...headers });
  dest.identify({
    reporter: 'destination', source: { workload: 'client', namespace: 'demo', address: '198.18.1.10', principal: 'spiffe://cluster.local/ns/demo/sa/client' },
    destination: { workload: 'server', namespace: 'demo', address: '198.18.2.11:8080' }, security: 'mutual_tls',
  });
  dest.countBytes({ bytesRead: 100, bytesWritten: 20 }, 'server');
  dest.finish('-');
  source.countBytes({ bytesRead: 20, bytesWritten: 100 }, 'client');
  source.finish('UF', 'upstream went away');
  if (o.shutdown ?? true) await tracing.shutdown();
  return { registry, headers, shutdown: () => tracing.shutdown() };
}

/** The two spans are one trace: the destination's parent is the source's span, kinds CLIENT and SERVER. */
export function assertOneTrace(spans: readonly ReceivedSpan[], headers: Record<string, string>): void {
  const client = spans.find((s) => s.attributes['weft.node'] === 'node-1');
  const server = spans.find((s) => s.attributes['weft.node'] === 'node-2');
  assert.ok(client !== undefined && server !== undefined, JSON.stringify(spans));
  assert.equal(client.kind, 3, 'the source agent span is CLIENT');
  assert.equal(server.kind, 2, 'the destination agent span is SERVER');
  assert.equal(server.traceId, client.traceId);
  assert.equal(server.parentSpanId, client.spanId);
  assert.equal(headers.traceparent, `00-${client.traceId}-${client.spanId}-01`);
  assert.equal(client.parentSpanId, '', 'the source span starts the trace');
  assert.equal(client.name, 'tcp server.demo.svc.cluster.local');
  assert.equal(client.attributes['network.transport'], 'tcp');
  assert.equal(client.attributes['server.address'], 'server.demo.svc.cluster.local');
  assert.equal(client.attributes['server.port'], 8080);
  assert.equal(client.attributes['weft.connection_security_policy'], 'mutual_tls');
  assert.equal(client.attributes['weft.response_flags'], 'UF');
  assert.equal(client.status, 2, 'a connection that ended with a flag is an error');
  assert.equal(server.attributes['network.peer.address'], '198.18.1.10');
  assert.equal(server.attributes['weft.source.principal'], 'spiffe://cluster.local/ns/demo/sa/client');
  assert.equal(server.attributes['weft.bytes_received'], 20);
  assert.equal(server.attributes['weft.bytes_sent'], 100);
  assert.equal(server.status, 0);
  assert.equal(client.resource['service.name'], 'weft-agent-test', 'OTEL_SERVICE_NAME names the service');
}
