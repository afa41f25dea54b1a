// The outbound listener (15001): accepts a captured connection, asks where it was going,
// finds the source workload by address, resolves the destination (Service VIP -> endpoint by
// the load balancer, pod, or outside the mesh), checks policy, then connects straight or
// through the tunnel and splices. A failed connect tries another endpoint (up to maxAttempts)
// and feeds outlier detection. Failures before the splice reset the client, as a refused
// connect would.

import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Http2Stream } from 'node:http2';

import { describeError, isWeftError } from '../core/errors.ts';
import type { Workload } from '../model/types.ts';
import type {
  Authorizer, ConnectionObserver, ConnectionRecord, MeshView, OriginalDestinationReader, PeerRef, ServiceRef, SocketAddress,
} from './contracts.ts';
import { NO_TELEMETRY } from './contracts.ts';
import { ConnectionTracker, setupSignal, type SetupSignal } from './connection-tracker.ts';
import { addressOf, peerOf, serviceRef } from './describe.ts';
import { ProxyErrors, TunnelRefusedError, proxyError } from './errors.ts';
import { ResponseFlags } from './flags.ts';
import { listen, plainIp, stopListening } from './listen.ts';
import { endpointKey, pickEndpoint, type LoadSnapshot, type RandomSource } from './load-balancer.ts';
import { endpointTarget, planHop, resolveDestination, type Destination, type Hop, type OutboundTarget } from './outbound-route.ts';
import { flagsForSplice } from './splice-flags.ts';
import { resetSide, splice, type SpliceSide } from './splice.ts';
import { connectTcp } from './tcp-connect.ts';
import type { TunnelRequest } from './tunnel-pool.ts';

export interface OutboundOptions {
  readonly nodeName: string;
  readonly host?: string;
  readonly port?: number;
  readonly reusePort?: boolean;
  /** Port of the peer agents' tunnel listener. Default 15008. */
  readonly tunnelPort?: number;
  /** Per attempt, the TCP connect to a pod (direct). The tunnel pool has its own timeouts. Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** Endpoints tried per connection. Default 3. */
  readonly maxAttempts?: number;
  /** Connect straight to destinations the mesh does not know (else refuse). Default true. */
  readonly passthroughUnknown?: boolean;
  /** For destination_service host names. Default cluster.local. */
  readonly clusterDomain?: string;
}

/** The tunnel pool as the outbound listener uses it. */
export interface TunnelOpener {
  open(request: TunnelRequest): Promise<Http2Stream>;
}

/** Endpoint load and health (UpstreamHealth). */
export interface EndpointHealth extends LoadSnapshot {
  acquire(key: string): void;
  release(key: string): void;
  connected(key: string): void;
  failed(key: string): boolean;
}

export interface OutboundDeps {
  readonly originalDestination: OriginalDestinationReader;
  readonly mesh: MeshView;
  readonly authorize: Authorizer;
  readonly tunnels: TunnelOpener;
  readonly health: EndpointHealth;
  readonly observer?: ConnectionObserver;
  /** Default Math.random. */
  readonly random?: RandomSource;
}

type Ending = [string, string?];

/** What #serve learned before connecting. */
interface Resolved {
  readonly src: Workload;
  readonly clientIp: string;
  readonly dstAddress: string | undefined;
  readonly destination: Destination;
  readonly service: ServiceRef | undefined;
  readonly identify: (destination: PeerRef, service: ServiceRef | undefined, security: 'mutual_tls' | 'none' | 'unknown') => void;
}

const ignore = (): void => undefined;

export class OutboundListener {
  readonly #deps: OutboundDeps;
  readonly #observer: ConnectionObserver;
  readonly #o: Required<OutboundOptions>;
  readonly #random: RandomSource;
  readonly #server: Server;
  readonly #tracker = new ConnectionTracker();
  /** The bound port, so the loop check reads the socket's local address (a getsockname) only when the port matches. */
  #listeningPort = -1;

  constructor(deps: OutboundDeps, options: OutboundOptions) {
    this.#deps = deps;
    this.#observer = deps.observer ?? NO_TELEMETRY;
    this.#random = deps.random ?? Math.random;
    this.#o = {
      host: '0.0.0.0', port: 15001, reusePort: true, tunnelPort: 15008, connectTimeoutMs: 5_000, maxAttempts: 3,
      passthroughUnknown: true, clusterDomain: 'cluster.local', ...options,
    };
    if (!Number.isInteger(this.#o.maxAttempts) || this.#o.maxAttempts < 1) {
      throw proxyError(ProxyErrors.BAD_OPTION, `outbound maxAttempts must be a positive integer, got ${this.#o.maxAttempts}`);
    }
    // Paused until the upstream is ready, so nothing is buffered meanwhile.
    this.#server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
      void this.#onConnection(socket);
    });
  }

  async listen(): Promise<AddressInfo> {
    const address = await listen(this.#server, 'outbound', { host: this.#o.host, port: this.#o.port, reusePort: this.#o.reusePort });
    this.#listeningPort = address.port;
    return address;
  }

  get connections(): number {
    return this.#tracker.size;
  }

  /** Stops accepting; open connections go on. */
  close(): Promise<void> {
    stopListening(this.#server);
    return Promise.resolve();
  }

  /** Stops accepting, lets connections finish up to `deadlineMs`, then resets the rest. */
  async drain(deadlineMs: number): Promise<void> {
    stopListening(this.#server);
    await this.#tracker.drain(deadlineMs);
  }

  async destroy(): Promise<void> {
    await this.drain(0);
  }

  async #onConnection(client: Socket): Promise<void> {
    client.on('error', ignore);
    const record = this.#observer.open();
    const conn = this.#tracker.track();
    let ending: Ending = [ResponseFlags.OK];
    try {
      ending = await this.#serve(client, record, conn.signal);
    } catch (err: unknown) {
      ending = [ResponseFlags.UPSTREAM_CONNECT_FAILURE, describeError(err)];
    } finally {
      if (ending[0] !== ResponseFlags.OK) resetSide(client);
      record.finish(ending[0], ending[1]);
      conn.done();
    }
  }

  async #serve(client: Socket, record: ConnectionRecord, signal: AbortSignal): Promise<Ending> {
    const mesh = this.#deps.mesh;
    const clientIp = plainIp(client.remoteAddress);
    const src = mesh.workloadByIp(clientIp);
    const source = peerOf(src, addressOf(clientIp, client.remotePort));
    let identified = false;
    const identify = (destination: PeerRef, service: ServiceRef | undefined, security: 'mutual_tls' | 'none' | 'unknown'): void => {
      if (identified) return;
      identified = true;
      record.identify({ reporter: 'source', source, destination, service, security });
    };

    let dst: SocketAddress | undefined;
    try {
      dst = await this.#deps.originalDestination(client);
    } catch (err: unknown) {
      identify({}, undefined, 'unknown');
      return [ResponseFlags.NO_ROUTE, describeError(err)];
    }
    if (dst === undefined || (dst.port === this.#listeningPort && dst.address === plainIp(client.localAddress))) {
      identify({}, undefined, 'unknown');
      return [ResponseFlags.NO_ROUTE, dst === undefined ? 'no original destination' : 'the connection was not captured (addressed to the proxy itself)'];
    }
    const dstAddress = addressOf(dst.address, dst.port);
    if (src === undefined || !src.enrolled) {
      identify({ address: dstAddress }, undefined, 'unknown');
      return [ResponseFlags.NO_ROUTE, `source ${clientIp} is not a pod in the mesh`];
    }

    const destination = resolveDestination(mesh, dst);
    if (destination.kind === 'external' && !this.#o.passthroughUnknown) {
      identify({ address: dstAddress }, undefined, 'none');
      return [ResponseFlags.NO_ROUTE, `${dstAddress ?? '?'} is outside the mesh and passthrough is off`];
    }
    const service = destination.kind === 'service' ? serviceRef(destination.service.service, this.#o.clusterDomain) : undefined;
    const endpoints = destination.kind === 'service' ? destination.endpoints : undefined;
    if (endpoints?.length === 0) {
      identify({ address: dstAddress }, service, 'unknown');
      return [ResponseFlags.NO_HEALTHY_UPSTREAM, `service ${destination.kind === 'service' ? destination.service.service.key : ''} has no endpoints`];
    }

    const setup = setupSignal(signal, client);
    try {
      return await this.#connectAndSplice(client, record, signal, setup, { src, clientIp, dstAddress, destination, service, identify });
    } finally {
      setup.dispose();
    }
  }

  async #connectAndSplice(
    client: Socket, record: ConnectionRecord, signal: AbortSignal, setup: SetupSignal, c: Resolved,
  ): Promise<Ending> {
    const { src, clientIp, dstAddress, destination, service, identify } = c;
    const mesh = this.#deps.mesh;
    const endpoints = destination.kind === 'service' ? destination.endpoints : undefined;
    const tried = new Set<string>();
    let failure: Ending = [ResponseFlags.NO_HEALTHY_UPSTREAM, 'no endpoint could be picked'];
    let last: OutboundTarget | undefined;
    for (let attempt = 0; attempt < this.#o.maxAttempts; attempt++) {
      let target: OutboundTarget | undefined;
      if (endpoints === undefined) target = attempt === 0 && destination.kind !== 'service' ? destination.target : undefined;
      else {
        const e = pickEndpoint(endpoints, this.#deps.health, this.#random, tried);
        target = e === undefined ? undefined : endpointTarget(mesh, e);
      }
      if (target === undefined) break;
      last = target;
      const key = endpointKey(target);
      tried.add(key);

      const denied = this.#denied(src, clientIp, target);
      if (denied !== undefined) {
        identify(peerOf(target.workload, addressOf(target.ip, target.port)), service, 'unknown');
        return [ResponseFlags.DENIED, denied];
      }
      const hop = planHop(mesh, this.#o.nodeName, target);
      if (hop.kind === 'unreachable') {
        this.#deps.health.failed(key);
        failure = [ResponseFlags.UPSTREAM_CONNECT_FAILURE, hop.detail];
        continue;
      }
      this.#deps.health.acquire(key);
      try {
        let upstream: SpliceSide;
        try {
          upstream = await this.#connect(hop, src, clientIp, setup.signal);
        } catch (err: unknown) {
          if (signal.aborted) return [ResponseFlags.DRAINED, 'drained while connecting'];
          if (setup.signal.aborted) return [ResponseFlags.DOWNSTREAM_RESET, 'client went away while connecting'];
          if (err instanceof TunnelRefusedError && err.status === 403) {
            identify(peerOf(target.workload, addressOf(target.ip, target.port)), service, 'mutual_tls');
            return [ResponseFlags.DENIED, `the destination agent denied it: ${err.message}`];
          }
          if (err instanceof TunnelRefusedError && err.status === 400) {
            identify(peerOf(target.workload, addressOf(target.ip, target.port)), service, 'mutual_tls');
            return [ResponseFlags.BAD_REQUEST, err.message];
          }
          if (!(isWeftError(err) && err.code === ProxyErrors.NO_CREDENTIALS)) this.#deps.health.failed(key);
          failure = [ResponseFlags.UPSTREAM_CONNECT_FAILURE, describeError(err)];
          continue;
        }
        this.#deps.health.connected(key);
        identify(peerOf(target.workload, addressOf(target.ip, target.port)), service, hop.kind === 'tunnel' ? 'mutual_tls' : 'none');
        record.countBytes(client, 'client');
        setup.dispose();
        client.resume();
        return flagsForSplice(await splice(client, upstream, signal));
      } finally {
        this.#deps.health.release(key);
      }
    }
    identify(last === undefined ? { address: dstAddress } : peerOf(last.workload, addressOf(last.ip, last.port)), service, 'unknown');
    return failure;
  }

  /** The denial reason, or undefined when allowed. Only mesh workloads carry policy. */
  #denied(src: Workload, clientIp: string, target: OutboundTarget): string | undefined {
    const w = target.workload;
    if (w === undefined || !w.enrolled) return undefined;
    const decision = this.#deps.authorize({
      sourcePrincipal: src.identity,
      sourceNamespace: src.namespace,
      sourceIp: clientIp,
      destinationWorkload: w,
      destinationPort: target.port,
    });
    return decision.allowed ? undefined : `denied: ${decision.reason}`;
  }

  #connect(hop: Exclude<Hop, { kind: 'unreachable' }>, src: Workload, clientIp: string, signal: AbortSignal): Promise<SpliceSide> {
    if (hop.kind === 'direct') {
      return connectTcp({ host: hop.target.ip, port: hop.target.port, timeoutMs: this.#o.connectTimeoutMs, signal });
    }
    return this.#deps.tunnels.open({
      sourceIdentity: src.identity,
      destinationIdentity: hop.workload.identity,
      node: { address: hop.nodeAddress, port: this.#o.tunnelPort },
      target: { address: hop.target.ip, port: hop.target.port },
      forwardedFor: clientIp,
      signal,
    });
  }
}
