// The inbound plaintext listener (15006), for capture modes that redirect inbound traffic to
// the agent: the same admission as the tunnel (a local enrolled pod, policy) but with no
// client identity, then a straight TCP splice to the pod. Besides its own port it serves
// sockets it is handed (adopt): eBPF capture opens one per pod inside the pod's network
// namespace, and the kernel hands that pod's inbound connections to it.

import { closeSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

import { describeError } from '../core/errors.ts';
import type { Workload } from '../model/types.ts';
import type { Authorizer, MeshView, OriginalDestinationReader } from './contracts.ts';
import { setupSignal } from './connection-tracker.ts';
import { addressOf, peerOf } from './describe.ts';
import { ResponseFlags } from './flags.ts';
import { admitInbound } from './inbound-admission.ts';
import { ListenerCore, type Accepted, type Ending, type Listener, type ListenerCommonDeps } from './listener.ts';
import { plainIp } from './listen.ts';
import { flagsForSplice } from './splice-flags.ts';
import { splice } from './splice.ts';
import { connectTcp } from './tcp-connect.ts';

export interface InboundPlainOptions {
  readonly nodeName: string;
  readonly host?: string;
  readonly port?: number;
  readonly reusePort?: boolean;
  readonly connectTimeoutMs?: number;
}

export interface InboundPlainDeps extends ListenerCommonDeps {
  readonly originalDestination: OriginalDestinationReader;
  readonly mesh: Pick<MeshView, 'workloadByIp' | 'mtlsMode'>;
  readonly authorize: Authorizer;
}

interface AdoptedSocket {
  readonly server: Server;
  readonly fd: number;
  /** listen() was called on the server (it owns the descriptor from then on). */
  started: boolean;
}

const SERVER_OPTIONS = { allowHalfOpen: true, noDelay: true, pauseOnConnect: true } as const;

export class InboundPlain implements Listener {
  readonly #deps: InboundPlainDeps;
  readonly #options: InboundPlainOptions;
  readonly #core: ListenerCore;
  readonly #adopted = new Map<string, AdoptedSocket>();
  #listening = false;
  #stopped = false;

  constructor(deps: InboundPlainDeps, options: InboundPlainOptions) {
    this.#deps = deps;
    this.#options = options;
    const server = createServer(SERVER_OPTIONS, (socket) => this.#accept(socket));
    this.#core = new ListenerCore('inbound-plain', server, {
      host: options.host ?? '0.0.0.0', port: options.port ?? 15006, reusePort: options.reusePort,
    }, deps);
  }

  #accept(socket: Socket): void {
    void this.#core.serve(socket, plainIp(socket.remoteAddress), (a) => this.#serve(socket, a), { resetOnFailure: true });
  }

  async listen(): Promise<AddressInfo> {
    const address = await this.#core.listen();
    this.#listening = true;
    for (const [key, a] of this.#adopted) if (!a.started) await this.#start(key, a);
    return address;
  }

  /**
   * Serves connections arriving on an already listening socket (a file descriptor this
   * listener now owns), under `key`; replaces one adopted under the same key. Before
   * listen() they wait in the socket's backlog; after close() the descriptor is closed.
   */
  async adopt(key: string, fd: number): Promise<void> {
    this.release(key);
    if (this.#stopped) {
      closeSync(fd);
      return;
    }
    const a: AdoptedSocket = { server: createServer(SERVER_OPTIONS, (socket) => this.#accept(socket)), fd, started: false };
    this.#adopted.set(key, a);
    if (this.#listening) await this.#start(key, a);
  }

  /** Stops serving the socket adopted under `key` and closes it. Unknown keys are ignored. */
  release(key: string): void {
    const a = this.#adopted.get(key);
    if (a === undefined) return;
    this.#adopted.delete(key);
    if (a.started) a.server.close();
    else closeSync(a.fd);
  }

  /** Keys of the sockets adopted. */
  adopted(): string[] {
    return [...this.#adopted.keys()].sort();
  }

  async #start(key: string, a: AdoptedSocket): Promise<void> {
    a.started = true;
    await new Promise<void>((resolve, reject) => {
      a.server.once('error', reject);
      a.server.listen({ fd: a.fd }, () => {
        a.server.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      this.#adopted.delete(key);
      throw err;
    });
  }

  get connections(): number {
    return this.#core.connections;
  }

  close(): Promise<void> {
    this.#stopAll();
    return Promise.resolve();
  }

  async drain(deadlineMs: number): Promise<void> {
    this.#stopAll();
    await this.#core.drainConnections(deadlineMs);
  }

  #stopAll(): void {
    this.#stopped = true;
    this.#core.stopAccepting();
    for (const key of [...this.#adopted.keys()]) this.release(key);
  }

  async destroy(): Promise<void> {
    await this.drain(0);
  }

  /** The local mesh workload at `ip` when its PeerAuthentication is STRICT. */
  #strict(ip: string): { workload: Workload; policy: string | undefined } | undefined {
    const workload = this.#deps.mesh.workloadByIp(ip);
    if (workload === undefined || !workload.enrolled || workload.node !== this.#options.nodeName) return undefined;
    const mtls = this.#deps.mesh.mtlsMode?.(workload);
    return mtls?.mode === 'STRICT' ? { workload, policy: mtls.policy } : undefined;
  }

  async #serve(client: Socket, { record, live, signal }: Accepted): Promise<Ending> {
    const sourceIp = live.sourceIp;
    const sourceWorkload = this.#deps.mesh.workloadByIp(sourceIp);
    // No certificate: the pod at that address gives labels, never a principal.
    const source = { ...peerOf(sourceWorkload, addressOf(sourceIp, client.remotePort)), principal: undefined };
    let target;
    try {
      target = await this.#deps.originalDestination(client);
    } catch (err: unknown) {
      record.identify({ reporter: 'destination', source, destination: {}, security: 'none' });
      return [ResponseFlags.NO_ROUTE, describeError(err)];
    }
    if (target === undefined) {
      record.identify({ reporter: 'destination', source, destination: {}, security: 'none' });
      return [ResponseFlags.NO_ROUTE, 'no original destination'];
    }
    // STRICT: only mTLS from the mesh. A plaintext connection to a local mesh pod is reset
    // whatever its policies say (they are not even asked).
    const strict = this.#strict(target.address);
    if (strict !== undefined) {
      record.identify({ reporter: 'destination', source, destination: peerOf(strict.workload, addressOf(target.address, target.port)), security: 'none' });
      return [ResponseFlags.MTLS_REQUIRED, `${strict.workload.key} takes mTLS only (PeerAuthentication ${strict.policy ?? '?'} is STRICT)`];
    }
    const admission = admitInbound(this.#deps.mesh, this.#deps.authorize, {
      nodeName: this.#options.nodeName, target, sourcePrincipal: undefined, sourceIp,
    });
    record.identify({
      reporter: 'destination', source, destination: peerOf(admission.workload, addressOf(target.address, target.port)), security: 'none',
    });
    if (!admission.ok) return [admission.flags, admission.detail];
    const limited = this.#deps.connectionRate?.(admission.workload);
    if (limited !== undefined) return [ResponseFlags.RATE_LIMITED, limited];
    live.allowed(admission.request);

    const setup = setupSignal(signal, client);
    let pod: Socket;
    try {
      pod = await connectTcp({ host: target.address, port: target.port, timeoutMs: this.#options.connectTimeoutMs ?? 5_000, signal: setup.signal });
    } catch (err: unknown) {
      return [signal.aborted ? ResponseFlags.DRAINED : ResponseFlags.UPSTREAM_CONNECT_FAILURE, describeError(err)];
    } finally {
      setup.dispose();
    }
    if (client.destroyed) {
      pod.destroy();
      return [ResponseFlags.DOWNSTREAM_RESET, 'client went away while the pod connected'];
    }
    record.countBytes(client, 'client');
    client.resume();
    return flagsForSplice(await splice(client, pod, signal, this.#core.spliceOptions));
  }
}
