// A loopback mesh for the HTTP layer: node a (127.0.0.1) runs the outbound listener with the
// protocol selector and the HTTP layer, node b (127.0.0.2) the inbound tunnel. Service
// `shop/web` (VIP 198.18.20.1, a table value) has four HTTP backends: two pods on node a
// (reached straight), two on node b (through the tunnel). Each backend answers with its
// name, so tests see where each request went. Requests come from pod `shop/client`
// (127.0.1.10) through `dial` (the captured-connection table of the L4 harness).

import { createServer as h1Server, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as h2Server, type Http2Server, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { TestContext } from 'node:test';

import { systemClock } from '../../../src/core/clock.ts';
import type { ServicePort, Workload } from '../../../src/model/types.ts';
import { ConnectionRegistry } from '../../../src/proxy/connection-registry.ts';
import type { Authorizer } from '../../../src/proxy/contracts.ts';
import type { RequestDescription, RequestObserver, RequestOutcome, RouteDecider } from '../../../src/proxy/http/contracts.ts';
import { HttpLayer, type HttpLayerDeps } from '../../../src/proxy/http/layer.ts';
import type { RequestStep } from '../../../src/proxy/http/exchange.ts';
import { InboundTunnel } from '../../../src/proxy/inbound-tunnel.ts';
import { OutboundListener } from '../../../src/proxy/outbound.ts';
import { protocolSelector } from '../../../src/proxy/sniff.ts';
import type { SocketCloser } from '../../../src/proxy/splice.ts';
import { TunnelPool } from '../../../src/proxy/tunnel-pool.ts';
import { UpstreamConnector } from '../../../src/proxy/upstream.ts';
import { UpstreamHealth } from '../../../src/proxy/upstream-health.ts';
import { OriginalDestinations, TestMesh, allowAll, dialCaptured, endpoint, testCredentials, workload } from './harness.ts';

export const WEB_VIP = '198.18.20.1';

export interface RequestLog {
  readonly description?: RequestDescription;
  readonly outcome?: RequestOutcome;
}

export function requestRecorder(): RequestObserver & { readonly records: RequestLog[] } {
  const records: RequestLog[] = [];
  return {
    records,
    request: () => {
      const r: { description?: RequestDescription; outcome?: RequestOutcome } = {};
      records.push(r);
      return {
        describe: (d) => {
          r.description ??= d;
        },
        finish: (o) => {
          if (r.outcome !== undefined) throw new Error('request finished twice');
          r.outcome = o;
        },
      };
    },
  };
}

export interface Backend {
  readonly pod: Workload;
  /** HTTP/1.1 server port (Service port 80). */
  readonly port: number;
  /** HTTP/2 server port (Service port 81). */
  readonly h2Port: number;
  readonly h1: Server;
  readonly h2: Http2Server;
}

export type H1Handler = (name: string, req: IncomingMessage, res: ServerResponse) => void;
export type H2Handler = (name: string, stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

export interface L7Mesh {
  readonly mesh: TestMesh;
  readonly client: Workload;
  readonly backends: Backend[];
  readonly outbound: OutboundListener;
  readonly layer: HttpLayer;
  readonly pool: TunnelPool;
  readonly connections: ConnectionRegistry;
  readonly requests: ReturnType<typeof requestRecorder>;
  /** What node b's HTTP layer recorded (reporter="destination"). */
  readonly inboundRequests: ReturnType<typeof requestRecorder>;
  /** A captured connection from the client pod to `web` on `port`. */
  dial(port?: number): Promise<Socket>;
  /** The same, to any address. */
  dialTo(dst: { address: string; port: number }): Promise<Socket>;
}

export interface L7Options {
  /** Service ports of `web`; port 80 -> h1 backends, 81 -> h2 backends. Default: 80 `http-web`, 81 `grpc-api`. */
  readonly ports?: readonly Partial<ServicePort>[];
  readonly h1?: H1Handler;
  readonly h2?: H2Handler;
  readonly authorize?: Authorizer;
  /** Node b's (the destination agent's) own authorizer, when it differs from node a's. */
  readonly destinationAuthorize?: Authorizer;
  /** Node b's per-request steps for tunnelled requests (as proxy-runtime composes them). */
  readonly inboundSteps?: (authorize: Authorizer) => readonly RequestStep[];
  readonly route?: RouteDecider;
  /** Node a's steps between routing and forwarding (retries, faults, as proxy-runtime composes them). */
  readonly steps?: readonly RequestStep[];
  readonly sniffMs?: number;
  /** The request balancer's clock (monotonic ms). */
  readonly now?: () => number;
  /** How node a's HTTP layer closes captured client sockets (SO_LINGER). */
  readonly closer?: SocketCloser;
  /** Descriptors for node a's pooled pod sockets (the agent's connection caps). */
  readonly descriptors?: HttpLayerDeps['descriptors'];
  /** How node b's HTTP layer closes the pod sockets it serves tunnelled requests on (SO_LINGER). */
  readonly destinationCloser?: SocketCloser;
  /** Node a's RequestMirror outcomes. */
  readonly mirrored?: HttpLayerDeps['mirrored'];
  /** Node a's outlier detection per Service, and its ejections. */
  readonly outliers?: HttpLayerDeps['outliers'];
  readonly outlierEvent?: HttpLayerDeps['outlierEvent'];
  /** Node a's DestinationPolicy connection-pool limits per Service, their counters, and overflows. */
  readonly poolFor?: HttpLayerDeps['poolFor'];
  readonly connectionLimits?: HttpLayerDeps['connectionLimits'];
  readonly overflowed?: HttpLayerDeps['overflowed'];
}

const defaultH1: H1Handler = (name, req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (d: Buffer) => parts.push(d));
  req.on('end', () => {
    res.setHeader('x-backend', name);
    res.end(`${name} ${req.method} ${req.url} ${Buffer.concat(parts).length}`);
  });
};

const defaultH2: H2Handler = (name, stream, headers) => {
  const parts: Buffer[] = [];
  stream.on('data', (d: Buffer) => parts.push(d));
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-backend': name }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': name }));
    stream.end(`${name} ${String(headers[':path'])} ${Buffer.concat(parts).length}`);
  });
};

async function listenOn<S extends Server | Http2Server>(server: S, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

export async function l7Mesh(t: TestContext, o: L7Options = {}): Promise<L7Mesh> {
  const mesh = new TestMesh();
  const client = mesh.addWorkload(workload('client', 'shop', '127.0.1.10', 'a'));
  mesh.nodes.set('a', '127.0.0.1');
  mesh.nodes.set('b', '127.0.0.2');
  const names = [['web-1', '127.0.3.1', 'a'], ['web-2', '127.0.3.2', 'a'], ['web-3', '127.0.4.1', 'b'], ['web-4', '127.0.4.2', 'b']] as const;
  const backends: Backend[] = [];
  for (const [name, ip, node] of names) {
    const pod = mesh.addWorkload(workload(name, 'shop', ip, node, { labels: { app: 'web' } }));
    const h1 = h1Server({ keepAliveTimeout: 60_000 }, (req, res) => (o.h1 ?? defaultH1)(name, req, res));
    h1.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      // A client that goes away is passed on as a reset: this echo server just closes.
      socket.on('error', () => socket.destroy());
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${String(req.headers.upgrade)}\r\nconnection: upgrade\r\nx-backend: ${name}\r\n\r\n`);
      if (head.length > 0) socket.write(head);
      socket.pipe(socket);
    });
    const h2 = h2Server();
    h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => (o.h2 ?? defaultH2)(name, stream, headers));
    // Each backend on its own ports (endpoints carry their port): a fixed port could still be
    // held on that address by an earlier test's server.
    const h1Port = await listenOn(h1, ip);
    const h2Port = await listenOn(h2, ip);
    backends.push({ pod, port: h1Port, h2Port, h1, h2 });
  }
  const ports = o.ports ?? [{ name: 'http-web', port: 80 }, { name: 'grpc-api', port: 81 }];
  const svcPorts: ServicePort[] = ports.map((p, i) => ({
    name: undefined, protocol: 'TCP', port: 80 + i, targetPort: 8080 + i, ...p,
  }));
  const service = {
    key: 'shop/web', name: 'web', namespace: 'shop', vip: WEB_VIP, ports: svcPorts, endpointSource: 'selector' as const, endpoints: [],
  };
  svcPorts.forEach((p, i) => {
    mesh.services.set(`${WEB_VIP}:${p.port}`, {
      at: { service, port: p }, endpoints: backends.map((b) => endpoint(b.pod, i === 0 ? b.port : b.h2Port)),
    });
  });
  const meshWithService = Object.assign(mesh, { service: (key: string) => (key === 'shop/web' ? service : undefined) });

  const connections = new ConnectionRegistry();
  // Node b's HTTP layer: tunnel streams that carry HTTP are served request by request there.
  const inboundRequests = requestRecorder();
  const authorizeB = o.destinationAuthorize ?? o.authorize ?? allowAll;
  const poolB = new TunnelPool({ credentials: testCredentials([]) });
  const layerB = new HttpLayer({
    mesh: meshWithService, authorize: authorizeB, connector: new UpstreamConnector(poolB), observer: inboundRequests,
    inboundSteps: o.inboundSteps?.(authorizeB) ?? [],
    ...(o.destinationCloser === undefined ? {} : { closer: o.destinationCloser }),
  }, { nodeName: 'b' });
  const inbound = new InboundTunnel({
    mesh, credentials: testCredentials(backends.map((b) => b.pod.identity)), authorize: authorizeB, registry: connections,
    http: layerB,
  }, { nodeName: 'b', host: '127.0.0.2', port: 0 });
  const inboundAddress = await inbound.listen();
  const pool = new TunnelPool({ credentials: testCredentials([client.identity]) });
  const connector = new UpstreamConnector(pool, { tunnelPort: inboundAddress.port });
  const requests = requestRecorder();
  const layer = new HttpLayer({
    mesh: meshWithService, authorize: o.authorize ?? allowAll, connector, observer: requests, route: o.route, now: o.now, steps: o.steps, mirrored: o.mirrored,
    outliers: o.outliers, outlierEvent: o.outlierEvent, poolFor: o.poolFor, connectionLimits: o.connectionLimits, overflowed: o.overflowed,
    ...(o.closer === undefined ? {} : { closer: o.closer }),
    ...(o.descriptors === undefined ? {} : { descriptors: o.descriptors }),
  }, { nodeName: 'a' });
  const table = new OriginalDestinations();
  const outbound = new OutboundListener({
    originalDestination: table.reader, mesh, authorize: o.authorize ?? allowAll, tunnels: pool, health: new UpstreamHealth(systemClock),
    upstream: connector, protocol: protocolSelector({ sniffMs: o.sniffMs }), http: layer, registry: connections,
  }, { nodeName: 'a', host: '127.0.0.1', port: 0, tunnelPort: inboundAddress.port });
  const outboundAddress = await outbound.listen();
  t.after(async () => {
    await outbound.destroy();
    layer.destroy();
    pool.destroy();
    await inbound.destroy();
    layerB.destroy();
    poolB.destroy();
    await Promise.all(backends.map(async (b) => {
      b.h1.closeAllConnections();
      await new Promise<void>((r) => b.h1.close(() => r()));
      await new Promise<void>((r) => b.h2.close(() => r()));
    }));
  });
  return {
    mesh, client, backends, outbound, layer, pool, connections, requests, inboundRequests,
    dial: (port = 80) => dialCaptured(outboundAddress, client.ip ?? '', { address: WEB_VIP, port }, table),
    dialTo: (dst) => dialCaptured(outboundAddress, client.ip ?? '', dst, table),
  };
}

/** Reads from `s` until `done(text so far)` holds; rejects on close or after `timeoutMs`. */
export function readUntil(s: Socket, done: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      if (err === undefined) resolve(text);
      else reject(err);
    };
    const onData = (d: Buffer): void => {
      text += d.toString('latin1');
      if (done(text)) finish();
    };
    const onClose = (): void => finish(new Error(`closed before the expected bytes; got ${JSON.stringify(text)}`));
    const timer = setTimeout(() => finish(new Error(`timed out; got ${JSON.stringify(text)}`)), timeoutMs);
    s.on('data', onData);
    s.once('close', onClose);
  });
}
