// The outbound listener (15001): accepts a captured connection, asks where it was going,
// finds the source workload by address, resolves the destination (Service VIP -> endpoint by
// the load balancer, pod, or outside the mesh), checks policy, then connects straight or
// through the tunnel (the upstream connector) and splices. After routing the connection
// forks: one the protocol selector calls HTTP goes to the HTTP handler instead. A failed
// connect tries another endpoint (up to maxAttempts) and feeds outlier detection. Failures
// before the splice reset the client, as a refused connect would.

import { createServer, Socket, type AddressInfo } from 'node:net';

import { describeError } from '../core/errors.ts';
import type { Workload } from '../model/types.ts';
import { classifyConnectFailure } from './connect-failure.ts';
import type { Authorizer, MeshView, OriginalDestinationReader, PeerRef, ServiceRef, SocketAddress } from './contracts.ts';
import { setupSignal, type SetupSignal } from './connection-tracker.ts';
import type { LiveConnection } from './connection-registry.ts';
import { addressOf, peerOf, serviceRef } from './describe.ts';
import { ProxyErrors, proxyError } from './errors.ts';
import { ResponseFlags } from './flags.ts';
import { ListenerCore, type Accepted, type Ending, type Listener, type ListenerCommonDeps } from './listener.ts';
import { plainIp } from './listen.ts';
import { endpointKey, pickEndpoint, type LoadSnapshot, type RandomSource } from './load-balancer.ts';
import { endpointTarget, planHop, resolveDestination, type Destination, type OutboundTarget } from './outbound-route.ts';
import { HalfClosedSweep, KernelHeldConnection, type Hold } from './kernel-held.ts';
import { handOverToKernel, type KernelFallback, type KernelHandover, type KernelPair, type KernelSplicer } from './kernel-splice.ts';
import { flagsForSplice } from './splice-flags.ts';
import { DEFAULT_HALF_CLOSED_IDLE_MS, splice } from './splice.ts';
import { UpstreamConnector, type ReachableHop, type TunnelOpener, type UpstreamStream } from './upstream.ts';

export type { TunnelOpener } from './upstream.ts';

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

/** Endpoint load and health (UpstreamHealth). */
export interface EndpointHealth extends LoadSnapshot {
  acquire(key: string): void;
  release(key: string): void;
  connected(key: string): void;
  failed(key: string): boolean;
}

/** The application protocol a routed connection speaks, as the fork after routing needs it. */
export type ConnectionProtocol = 'opaque' | 'http1' | 'h2';

/** A routed connection, as the HTTP layer receives it. */
export interface RoutedConnection {
  readonly client: Socket;
  readonly src: Workload;
  /** The client as telemetry labels it. */
  readonly source: PeerRef;
  readonly clientIp: string;
  readonly destination: Destination;
  /** The original destination, `ip:port`. */
  readonly dstAddress: string | undefined;
  readonly service: ServiceRef | undefined;
  readonly protocol: Exclude<ConnectionProtocol, 'opaque'>;
  /** Sets the connection record's description (the first call wins). */
  readonly identify: (destination: PeerRef, service: ServiceRef | undefined, security: 'mutual_tls' | 'none' | 'unknown') => void;
}

/**
 * Chooses the protocol of a routed connection (declared by the port, or sniffed from the
 * client's first bytes, which it must leave unread on `client`). Never rejects.
 */
export type ProtocolSelector = (client: Socket, destination: Destination, signal: AbortSignal) => Promise<ConnectionProtocol>;

/** Serves a routed connection that speaks HTTP (src/proxy/http). */
export interface HttpHandler {
  serve(connection: RoutedConnection, accepted: Accepted): Promise<Ending>;
}

export interface OutboundDeps extends ListenerCommonDeps {
  readonly originalDestination: OriginalDestinationReader;
  readonly mesh: MeshView;
  readonly authorize: Authorizer;
  readonly tunnels: TunnelOpener;
  readonly health: EndpointHealth;
  /** How connections reach endpoints; built from `tunnels` and the options when absent. */
  readonly upstream?: UpstreamConnector;
  /** The fork after routing; every connection is opaque (spliced) when absent. */
  readonly protocol?: ProtocolSelector;
  /** Serves connections the selector calls HTTP; required when `protocol` is given. */
  readonly http?: HttpHandler;
  /** Default Math.random. */
  readonly random?: RandomSource;
  /**
   * Moves the bytes of authorized opaque connections between two pods of this node in the
   * kernel; user-space splice for all when absent (the kernel lacks it, or it is off).
   */
  readonly kernel?: KernelSplicer;
  /** Told, per same-node opaque connection, whether the kernel splices it or why user space does. */
  readonly kernelSpliced?: (result: 'kernel' | KernelFallback) => void;
  /**
   * Told when a kernel pair keeps one direction's bytes for the proxy (a segment came while
   * the sockets were entering the kernel's map): that direction moves through JavaScript.
   */
  readonly kernelPassing?: () => void;
  /**
   * A Service's DestinationPolicy tcp.maxConnections for an opaque connection to it: a permit
   * (released when the connection ends), 'overflow' (refused at once, flag UO), or undefined
   * when the Service has no limit.
   */
  readonly connectionPool?: (serviceKey: string) => { release(): void } | { readonly overflow: string } | undefined;
}

/** What #serve learned before connecting. */
interface Resolved {
  readonly src: Workload;
  readonly clientIp: string;
  readonly dstAddress: string | undefined;
  readonly destination: Destination;
  readonly service: ServiceRef | undefined;
  readonly identify: RoutedConnection['identify'];
}

const OPAQUE = (): Promise<ConnectionProtocol> => Promise.resolve('opaque');

/** What #connectAndSplice returns for a connection now held in the kernel (it ends later). */
const HANDED_OVER = Symbol('handed over');

/** An endpoint's load, held until the connection ends. */
class EndpointHold implements Hold {
  readonly #health: EndpointHealth;
  readonly #key: string;

  constructor(health: EndpointHealth, key: string) {
    this.#health = health;
    this.#key = key;
  }

  release(): void {
    this.#health.release(this.#key);
  }
}

export class OutboundListener implements Listener {
  readonly #deps: OutboundDeps;
  readonly #o: Required<OutboundOptions>;
  readonly #random: RandomSource;
  readonly #core: ListenerCore;
  readonly #upstream: UpstreamConnector;
  readonly #protocol: ProtocolSelector;
  readonly #halfClosed: HalfClosedSweep;
  /** The bound port, so the loop check reads the socket's local address (a getsockname) only when the port matches. */
  #listeningPort = -1;

  constructor(deps: OutboundDeps, options: OutboundOptions) {
    this.#deps = deps;
    this.#random = deps.random ?? Math.random;
    this.#o = {
      host: '0.0.0.0', port: 15001, reusePort: true, tunnelPort: 15008, connectTimeoutMs: 5_000, maxAttempts: 3,
      passthroughUnknown: true, clusterDomain: 'cluster.local', ...options,
    };
    if (!Number.isInteger(this.#o.maxAttempts) || this.#o.maxAttempts < 1) {
      throw proxyError(ProxyErrors.BAD_OPTION, `outbound maxAttempts must be a positive integer, got ${this.#o.maxAttempts}`);
    }
    if (deps.protocol !== undefined && deps.http === undefined) {
      throw proxyError(ProxyErrors.BAD_OPTION, 'outbound: a protocol selector needs an HTTP handler');
    }
    this.#protocol = deps.protocol ?? OPAQUE;
    this.#upstream = deps.upstream ?? new UpstreamConnector(deps.tunnels, { tunnelPort: this.#o.tunnelPort, connectTimeoutMs: this.#o.connectTimeoutMs });
    // Paused until the upstream is ready, so nothing is buffered meanwhile.
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
      void this.#core.serve(socket, plainIp(socket.remoteAddress), (a) => this.#serve(socket, a), { resetOnFailure: true });
    });
    this.#core = new ListenerCore('outbound', server, { host: this.#o.host, port: this.#o.port, reusePort: this.#o.reusePort }, deps);
    this.#halfClosed = new HalfClosedSweep(this.#core.spliceOptions.halfClosedIdleMs ?? DEFAULT_HALF_CLOSED_IDLE_MS);
  }

  async listen(): Promise<AddressInfo> {
    const address = await this.#core.listen();
    this.#listeningPort = address.port;
    return address;
  }

  get connections(): number {
    return this.#core.connections;
  }

  close(): Promise<void> {
    this.#core.stopAccepting();
    return Promise.resolve();
  }

  async drain(deadlineMs: number): Promise<void> {
    this.#core.stopAccepting();
    await this.#core.drainConnections(deadlineMs);
  }

  async destroy(): Promise<void> {
    await this.drain(0);
  }

  async #serve(client: Socket, accepted: Accepted): Promise<Ending> {
    const { record, signal } = accepted;
    const mesh = this.#deps.mesh;
    const clientIp = accepted.live.sourceIp;
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
    const resolved: Resolved = { src, clientIp, dstAddress, destination, service, identify };
    // The fork after routing: HTTP is served request by request (a route may send it to other
    // backends, and a Service without endpoints gets 503s), anything else is spliced.
    const protocol = await this.#protocol(client, destination, signal);
    if (protocol !== 'opaque' && this.#deps.http !== undefined && !signal.aborted) {
      return this.#deps.http.serve({ client, source, ...resolved, protocol }, accepted);
    }
    if (destination.kind === 'service' && destination.endpoints.length === 0) {
      identify({ address: dstAddress }, service, 'unknown');
      return [ResponseFlags.NO_HEALTHY_UPSTREAM, `service ${destination.service.service.key} has no endpoints`];
    }
    const permit = destination.kind === 'service' ? this.#deps.connectionPool?.(destination.service.service.key) : undefined;
    if (permit !== undefined && 'overflow' in permit) {
      identify({ address: dstAddress }, service, 'unknown');
      return [ResponseFlags.UPSTREAM_OVERFLOW, permit.overflow];
    }
    const setup = setupSignal(signal, client);
    let ending: Ending | typeof HANDED_OVER | undefined;
    try {
      ending = await this.#connectAndSplice(client, accepted, setup, resolved, permit);
      return ending === HANDED_OVER ? [ResponseFlags.OK] : ending;
    } finally {
      setup.dispose();
      // A connection held in the kernel keeps its permit until it ends (KernelHeldConnection).
      if (ending !== HANDED_OVER) permit?.release();
    }
  }

  async #connectAndSplice(
    client: Socket, accepted: Accepted, setup: SetupSignal, c: Resolved, permit: Hold | undefined,
  ): Promise<Ending | typeof HANDED_OVER> {
    const { record, live, signal } = accepted;
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
      const peer = peerOf(target.workload, addressOf(target.ip, target.port));

      const denied = this.#denied(src, clientIp, target, live);
      if (denied !== undefined) {
        identify(peer, service, 'unknown');
        return [ResponseFlags.DENIED, denied];
      }
      const hop = planHop(mesh, this.#o.nodeName, target);
      if (hop.kind === 'unreachable') {
        this.#deps.health.failed(key);
        failure = [ResponseFlags.UPSTREAM_CONNECT_FAILURE, hop.detail];
        continue;
      }
      // A pod of this node: its L4 rate limits are this agent's to apply (the destination
      // agent of a tunnelled connection applies them there).
      const local = hop.kind === 'direct' && target.workload?.enrolled === true && target.workload.node === this.#o.nodeName ? target.workload : undefined;
      const limited = local === undefined ? undefined : this.#deps.connectionRate?.(local);
      if (limited !== undefined) {
        identify(peer, service, 'none');
        return [ResponseFlags.RATE_LIMITED, limited];
      }
      this.#deps.health.acquire(key);
      let held = false;
      try {
        let upstream;
        try {
          upstream = await this.#upstream.connect({ hop, sourceIdentity: src.identity, clientIp, traceHeaders: record.traceHeaders?.(), signal: setup.signal });
        } catch (err: unknown) {
          const f = classifyConnectFailure({ error: err, drained: signal.aborted, clientGone: setup.signal.aborted });
          if (f.kind === 'stop') {
            if (f.security === 'mutual_tls') identify(peer, service, 'mutual_tls');
            return f.ending;
          }
          if (f.eject) this.#deps.health.failed(key);
          failure = f.ending;
          continue;
        }
        this.#deps.health.connected(key);
        identify(peer, service, hop.kind === 'tunnel' ? 'mutual_tls' : 'none');
        setup.dispose();
        const handover = await this.#kernelPair(client, upstream, hop);
        const kernel = handover === undefined || typeof handover.result === 'string' ? undefined : handover.result;
        record.countBytes(handover?.bytes ?? client, 'client');
        if (kernel !== undefined && upstream instanceof Socket && this.#holdInKernel(kernel, client, upstream, accepted, new EndpointHold(this.#deps.health, key), permit)) {
          held = true;
          return HANDED_OVER;
        }
        client.resume();
        if (kernel === undefined) return flagsForSplice(await splice(client, upstream, signal, this.#core.spliceOptions));
        try {
          return flagsForSplice(await splice(client, upstream, signal, { ...this.#core.spliceOptions, kernel }));
        } finally {
          kernel.release();
        }
      } finally {
        if (!held) this.#deps.health.release(key);
      }
    }
    identify(last === undefined ? { address: dstAddress } : peerOf(last.workload, addressOf(last.ip, last.port)), service, 'unknown');
    return failure;
  }

  /**
   * Hands a kernel pair's descriptors to the addon and drops both sockets, so the idle
   * connection costs one KernelHeldConnection; false (nothing changed) when the addon cannot
   * take them (adopt() throws, as it does when the kernel keeps bytes for the proxy) or
   * JavaScript still holds state the pair cannot carry (bytes buffered, a FIN sent), and
   * splice() watches the pair instead.
   */
  #holdInKernel(kernel: KernelPair, client: Socket, upstream: Socket, accepted: Accepted, endpoint: Hold, permit: Hold | undefined): boolean {
    for (const s of [client, upstream]) {
      if (s.destroyed || s.readableLength > 0 || s.writableLength > 0 || s.writableEnded) return false;
    }
    try {
      const held = KernelHeldConnection.start((owner) => kernel.adopt(owner), () => accepted.handOver(), endpoint, permit, this.#halfClosed, client);
      accepted.record.countBytes(held, 'client');
    } catch {
      return false;
    }
    client.destroy();
    upstream.destroy();
    return true;
  }

  /**
   * The kernel pair for a connection between two pods of this node, when it can have one.
   * Only here, after policy allowed it and on the opaque path (the HTTP layer parses its own).
   */
  async #kernelPair(client: Socket, upstream: UpstreamStream, hop: ReachableHop): Promise<KernelHandover | undefined> {
    const splicer = this.#deps.kernel;
    if (splicer === undefined || hop.kind !== 'direct' || !(upstream instanceof Socket)) return undefined;
    const w = hop.target.workload;
    if (w === undefined || !w.enrolled || w.node !== this.#o.nodeName) return undefined;
    // Bytes the sniff put back (or a server's greeting) go out first; then the kernel takes over.
    const handover = await handOverToKernel(splicer, client, upstream);
    this.#deps.kernelSpliced?.(typeof handover.result === 'string' ? handover.result : 'kernel');
    if (typeof handover.result !== 'string' && handover.result.passing()) this.#deps.kernelPassing?.();
    return handover;
  }

  /** The denial reason, or undefined when allowed (then recorded on the live connection). Only mesh workloads carry policy. */
  #denied(src: Workload, clientIp: string, target: OutboundTarget, live: LiveConnection): string | undefined {
    const w = target.workload;
    if (w === undefined || !w.enrolled) return undefined;
    const request = {
      sourcePrincipal: src.identity,
      sourceNamespace: src.namespace,
      sourceIp: clientIp,
      destinationWorkload: w,
      destinationPort: target.port,
    };
    const decision = this.#deps.authorize(request);
    if (!decision.allowed) return `denied: ${decision.reason}`;
    live.allowed(request);
    return undefined;
  }
}
