// A loopback mesh for proxy tests: pods are 127.0.0.x addresses, a node is an agent
// listening on another 127.0.0.x, certificates come from the openssl CLI, and the original
// destination of a captured connection is looked up in a table keyed by the client's port.
// Everything on the data path is real: sockets, TLS, HTTP/2.

import type { MtlsDecision } from '../../../src/model/peer-authentication.ts';
import { X509Certificate } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';

import type { AuthorizationDecision, AuthorizationRequest } from '../../../src/model/authorize.ts';
import type { ServiceAtVip } from '../../../src/model/state.ts';
import type { Endpoint, MeshService, Workload } from '../../../src/model/types.ts';
import type { MeshView, SocketAddress, TunnelCredentials } from '../../../src/proxy/contracts.ts';
import { spiffeId, testCa, testLeaf } from '../../support/certs.ts';

export function workload(name: string, ns: string, ip: string, node: string, extra: Partial<Workload> = {}): Workload {
  return {
    key: `${ns}/${name}`, name, namespace: ns, serviceAccount: name, node, ip, labels: { app: name }, enrolled: true,
    identity: spiffeId(ns, name), ...extra,
  };
}

export function service(name: string, ns: string, vip: string, port: number, targetPort: number): MeshService {
  return {
    key: `${ns}/${name}`, name, namespace: ns, vip, ports: [{ name: undefined, port, targetPort, protocol: 'TCP' }],
    endpointSource: 'selector', endpoints: [],
  };
}

/** A mutable MeshView over plain maps. */
export class TestMesh implements MeshView {
  readonly workloads = new Map<string, Workload>();
  readonly services = new Map<string, { at: ServiceAtVip; endpoints: Endpoint[] }>();
  readonly nodes = new Map<string, string>();
  /** Workload keys whose PeerAuthentication is STRICT (every other one is PERMISSIVE). */
  readonly strict = new Set<string>();

  mtlsMode(w: Workload): MtlsDecision {
    return this.strict.has(w.key) ? { mode: 'STRICT', policy: `${w.namespace}/strict`, scope: 'namespace' } : { mode: 'PERMISSIVE' };
  }

  addWorkload(w: Workload): Workload {
    this.workloads.set(w.ip ?? '', w);
    return w;
  }

  addService(s: MeshService, endpoints: Endpoint[]): void {
    const port = s.ports[0];
    if (port === undefined) throw new Error('service without port');
    this.services.set(`${s.vip}:${port.port}`, { at: { service: s, port }, endpoints });
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.workloads.get(ip);
  }

  serviceByVip(ip: string, port: number): ServiceAtVip | undefined {
    return this.services.get(`${ip}:${port}`)?.at;
  }

  endpoints(serviceKey: string, port: number): readonly Endpoint[] {
    for (const s of this.services.values()) if (s.at.service.key === serviceKey && s.at.port.port === port) return s.endpoints;
    return [];
  }

  nodeAddress(node: string): string | undefined {
    return this.nodes.get(node);
  }
}

export function endpoint(w: Workload, port: number, weight = 1): Endpoint {
  return { ip: w.ip ?? '', port, node: w.node, workload: w.key, weight };
}

export const allowAll = (): AuthorizationDecision => ({ allowed: true, reason: 'no policy' });

/** Denies requests whose destination workload name is in `names`. */
export function denyTo(...names: string[]): (r: AuthorizationRequest) => AuthorizationDecision {
  return (r) => names.includes(r.destinationWorkload.name) ? { allowed: false, reason: 'test deny', policy: 'test/deny' } : allowAll();
}

/**
 * Credentials for the identities given, from the mesh CA (or `caName`). `presentAs` makes an
 * identity present another identity's certificate (a lying node).
 */
export function testCredentials(identities: readonly string[], o: { caName?: string; presentAs?: Record<string, string> } = {}): TunnelCredentials {
  const trusted = testCa('mesh').cert;
  const contexts = new Map<string, SecureContext>();
  for (const id of identities) {
    const leaf = testLeaf(o.presentAs?.[id] ?? id, o.caName ?? 'mesh');
    contexts.set(id, createSecureContext({ cert: leaf.cert, key: leaf.key, ca: trusted, minVersion: 'TLSv1.3' }));
  }
  return {
    secureContext: (id) => contexts.get(id),
    verifyPeer: (cert: X509Certificate, expected?: string) => {
      const uris = (cert.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
      const id = uris[0];
      if (id === undefined || uris.length !== 1) throw new Error('peer has not exactly one URI SAN');
      if (expected !== undefined && id !== expected) throw new Error(`peer is ${id}, expected ${expected}`);
      return id;
    },
  };
}

/** Original destinations keyed by the client's local port; lookups wait briefly for the entry. */
export class OriginalDestinations {
  readonly #table = new Map<number, SocketAddress>();
  readonly #waiters = new Map<number, (d: SocketAddress) => void>();

  set(clientPort: number, dst: SocketAddress): void {
    this.#table.set(clientPort, dst);
    this.#waiters.get(clientPort)?.(dst);
  }

  readonly reader = (socket: Socket): Promise<SocketAddress | undefined> => {
    const port = socket.remotePort ?? 0;
    const known = this.#table.get(port);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(port);
        resolve(undefined);
      }, 2000);
      this.#waiters.set(port, (d) => {
        clearTimeout(timer);
        this.#waiters.delete(port);
        resolve(d);
      });
    });
  };
}

/** Connects from `fromIp` to the listener and records where the connection "was going". */
export function dialCaptured(listener: AddressInfo, fromIp: string, dst: SocketAddress, table: OriginalDestinations): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const s = connect({ host: listener.address, port: listener.port, localAddress: fromIp, allowHalfOpen: true });
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      table.set(s.localPort ?? 0, dst);
      resolve(s);
    });
  });
}

export interface EchoServer {
  readonly server: Server;
  readonly address: AddressInfo;
  readonly sockets: Set<Socket>;
  close(): Promise<void>;
}

/** Echoes bytes back, and ends its side when the client ends (half-close aware). */
export async function echoServer(host: string, handler?: (s: Socket) => void): Promise<EchoServer> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    if (handler !== undefined) handler(s);
    else s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    server, sockets, address: server.address() as AddressInfo,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

/** Sends `data`, half-closes, and resolves with everything received until the server's FIN. */
export function exchange(s: Socket, data: Buffer, chunk = 64 * 1024): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
    let off = 0;
    const pump = (): void => {
      while (off < data.length) {
        const piece = data.subarray(off, off + chunk);
        off += piece.length;
        if (!s.write(piece)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    pump();
  });
}

/** Resolves with the error code when the socket closes with an error, or 'closed' on a clean close. */
export function closure(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let code = 'closed';
    s.on('error', (e: NodeJS.ErrnoException) => {
      code = e.code ?? e.message;
    });
    s.once('close', () => resolve(code));
    s.resume();
  });
}

export function until(cond: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) resolve();
      else if (Date.now() - start > timeoutMs) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}
