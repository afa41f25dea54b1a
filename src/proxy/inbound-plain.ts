// The inbound plaintext listener (15006), for capture modes that redirect inbound traffic to
// the agent: the same admission as the tunnel (a local enrolled pod, policy) but with no
// client identity, then a straight TCP splice to the pod.

import { createServer, type AddressInfo, type Socket } from 'node:net';

import { describeError } from '../core/errors.ts';
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
  readonly mesh: Pick<MeshView, 'workloadByIp'>;
  readonly authorize: Authorizer;
}

export class InboundPlain implements Listener {
  readonly #deps: InboundPlainDeps;
  readonly #options: InboundPlainOptions;
  readonly #core: ListenerCore;

  constructor(deps: InboundPlainDeps, options: InboundPlainOptions) {
    this.#deps = deps;
    this.#options = options;
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
      void this.#core.serve(socket, plainIp(socket.remoteAddress), (a) => this.#serve(socket, a), { resetOnFailure: true });
    });
    this.#core = new ListenerCore('inbound-plain', server, {
      host: options.host ?? '0.0.0.0', port: options.port ?? 15006, reusePort: options.reusePort,
    }, deps);
  }

  listen(): Promise<AddressInfo> {
    return this.#core.listen();
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
    const admission = admitInbound(this.#deps.mesh, this.#deps.authorize, {
      nodeName: this.#options.nodeName, target, sourcePrincipal: undefined, sourceIp,
    });
    record.identify({
      reporter: 'destination', source, destination: peerOf(admission.workload, addressOf(target.address, target.port)), security: 'none',
    });
    if (!admission.ok) return [admission.flags, admission.detail];
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
