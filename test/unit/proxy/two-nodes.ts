// Two loopback "nodes": node a runs the outbound listener (127.0.0.1) with a tunnel pool,
// node b runs the inbound tunnel (127.0.0.2). Pod `shop/client` (127.0.1.10) is on a, pod
// `shop/echo` (127.0.2.20, an echo server) is on b behind the Service VIP 198.18.10.1:80
// (a table value only; nothing is ever sent to it). Telemetry is real: a Registry and a pino
// logger writing into `logLines`.

import type { TestContext } from 'node:test';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';

import { pino } from 'pino';
import { Registry } from 'prom-client';

import { systemClock } from '../../../src/core/clock.ts';
import type { Workload } from '../../../src/model/types.ts';
import { ConnectionRegistry, type ConnectionGate } from '../../../src/proxy/connection-registry.ts';
import type { Authorizer, TunnelCredentials } from '../../../src/proxy/contracts.ts';
import { InboundTunnel, type InboundTunnelOptions } from '../../../src/proxy/inbound-tunnel.ts';
import { OutboundListener, type OutboundOptions } from '../../../src/proxy/outbound.ts';
import type { SpliceOptions } from '../../../src/proxy/splice.ts';
import { TunnelPool, type TunnelPoolOptions } from '../../../src/proxy/tunnel-pool.ts';
import { UpstreamHealth } from '../../../src/proxy/upstream-health.ts';
import { ConnectionTelemetry } from '../../../src/telemetry/connection-telemetry.ts';
import { OverloadTelemetry } from '../../../src/telemetry/overload-telemetry.ts';
import {
  OriginalDestinations, TestMesh, allowAll, dialCaptured, echoServer, endpoint, service, testCredentials, workload,
  type EchoServer,
} from './harness.ts';

export const VIP = { address: '198.18.10.1', port: 80 };

export interface TwoNodes {
  readonly mesh: TestMesh;
  readonly client: Workload;
  readonly server: Workload;
  readonly echo: EchoServer;
  readonly inbound: InboundTunnel;
  readonly inboundAddress: AddressInfo;
  readonly pool: TunnelPool;
  readonly outbound: OutboundListener;
  readonly outboundAddress: AddressInfo;
  readonly health: UpstreamHealth;
  readonly table: OriginalDestinations;
  readonly registry: Registry;
  /** Open connections of both nodes' listeners (one registry, as one runtime would hold). */
  readonly connections: ConnectionRegistry;
  readonly telemetry: ConnectionTelemetry;
  readonly logLines: Record<string, unknown>[];
  /** A captured connection from the client pod to `dst` (the VIP by default). */
  dial(dst?: { address: string; port: number }): ReturnType<typeof dialCaptured>;
}

export interface TwoNodeOptions {
  readonly serverCredentials?: TunnelCredentials;
  readonly clientCredentials?: TunnelCredentials;
  readonly authorize?: Authorizer;
  readonly inboundAuthorize?: Authorizer;
  readonly pool?: TunnelPoolOptions;
  readonly outbound?: Partial<OutboundOptions>;
  readonly inbound?: Partial<InboundTunnelOptions>;
  readonly echo?: Parameters<typeof echoServer>[1];
  readonly outboundGate?: ConnectionGate;
  readonly inboundGate?: ConnectionGate;
  /** Splice options of both listeners (SO_LINGER closer, half-closed idle timeout). */
  readonly splice?: SpliceOptions;
}

export async function twoNodes(t: TestContext, o: TwoNodeOptions = {}): Promise<TwoNodes> {
  const mesh = new TestMesh();
  const client = mesh.addWorkload(workload('client', 'shop', '127.0.1.10', 'a'));
  const server = mesh.addWorkload(workload('echo', 'shop', '127.0.2.20', 'b'));
  mesh.nodes.set('a', '127.0.0.1');
  mesh.nodes.set('b', '127.0.0.2');

  const registry = new Registry();
  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  const telemetry = new ConnectionTelemetry({ registry, logger });
  const overload = new OverloadTelemetry({ registry, logger, logIntervalMs: 0 });

  const connections = new ConnectionRegistry();
  const echo = await echoServer(server.ip ?? '', o.echo);
  const inbound = new InboundTunnel({
    mesh, credentials: o.serverCredentials ?? testCredentials([server.identity]), authorize: o.inboundAuthorize ?? o.authorize ?? allowAll,
    observer: telemetry, overload, registry: connections, gate: o.inboundGate, ...(o.splice === undefined ? {} : { splice: o.splice }),
  }, { nodeName: 'b', host: '127.0.0.2', port: 0, ...o.inbound });
  const inboundAddress = await inbound.listen();

  const pool = new TunnelPool({ credentials: o.clientCredentials ?? testCredentials([client.identity]), observer: telemetry }, o.pool);
  const health = new UpstreamHealth(systemClock);
  const table = new OriginalDestinations();
  const outbound = new OutboundListener({
    originalDestination: table.reader, mesh, authorize: o.authorize ?? allowAll, tunnels: pool, health, observer: telemetry,
    overload, registry: connections, gate: o.outboundGate, ...(o.splice === undefined ? {} : { splice: o.splice }),
  }, { nodeName: 'a', host: '127.0.0.1', port: 0, tunnelPort: inboundAddress.port, ...o.outbound });
  const outboundAddress = await outbound.listen();

  mesh.addService(service('echo', 'shop', VIP.address, VIP.port, echo.address.port), [endpoint(server, echo.address.port)]);

  t.after(async () => {
    await outbound.destroy();
    pool.destroy();
    await inbound.destroy();
    await echo.close();
  });

  return {
    mesh, client, server, echo, inbound, inboundAddress, pool, outbound, outboundAddress, health, table, registry, connections, telemetry, logLines,
    dial: (dst = VIP) => dialCaptured(outboundAddress, client.ip ?? '', dst, table),
  };
}
