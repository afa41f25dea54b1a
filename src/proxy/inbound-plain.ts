// The inbound plaintext listener (15006), for capture modes that redirect inbound traffic to
// the agent: the same admission as the tunnel (a local enrolled pod, policy) but with no
// client identity, then a straight TCP splice to the pod.

import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

import { describeError } from '../core/errors.ts';
import type { Authorizer, ConnectionObserver, ConnectionRecord, MeshView, OriginalDestinationReader } from './contracts.ts';
import { NO_TELEMETRY } from './contracts.ts';
import { ConnectionTracker, setupSignal } from './connection-tracker.ts';
import { addressOf, peerOf } from './describe.ts';
import { ResponseFlags } from './flags.ts';
import { admitInbound } from './inbound-admission.ts';
import { listen, plainIp, stopListening } from './listen.ts';
import { flagsForSplice } from './splice-flags.ts';
import { resetSide, splice } from './splice.ts';
import { connectTcp } from './tcp-connect.ts';

export interface InboundPlainOptions {
  readonly nodeName: string;
  readonly host?: string;
  readonly port?: number;
  readonly reusePort?: boolean;
  readonly connectTimeoutMs?: number;
}

export interface InboundPlainDeps {
  readonly originalDestination: OriginalDestinationReader;
  readonly mesh: Pick<MeshView, 'workloadByIp'>;
  readonly authorize: Authorizer;
  readonly observer?: ConnectionObserver;
}

const ignore = (): void => undefined;

export class InboundPlain {
  readonly #deps: InboundPlainDeps;
  readonly #observer: ConnectionObserver;
  readonly #options: InboundPlainOptions;
  readonly #server: Server;
  readonly #tracker = new ConnectionTracker();

  constructor(deps: InboundPlainDeps, options: InboundPlainOptions) {
    this.#deps = deps;
    this.#observer = deps.observer ?? NO_TELEMETRY;
    this.#options = options;
    this.#server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
      void this.#onConnection(socket);
    });
  }

  listen(): Promise<AddressInfo> {
    return listen(this.#server, 'inbound plaintext', {
      host: this.#options.host ?? '0.0.0.0', port: this.#options.port ?? 15006, reusePort: this.#options.reusePort,
    });
  }

  get connections(): number {
    return this.#tracker.size;
  }

  close(): Promise<void> {
    stopListening(this.#server);
    return Promise.resolve();
  }

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
    let flags: string = ResponseFlags.OK;
    let detail: string | undefined;
    try {
      [flags, detail] = await this.#serve(client, record, conn.signal);
    } catch (err: unknown) {
      flags = ResponseFlags.UPSTREAM_CONNECT_FAILURE;
      detail = describeError(err);
    } finally {
      if (flags !== ResponseFlags.OK) resetSide(client);
      record.finish(flags, detail);
      conn.done();
    }
  }

  async #serve(client: Socket, record: ConnectionRecord, signal: AbortSignal): Promise<[string, string?]> {
    const sourceIp = plainIp(client.remoteAddress);
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
    return flagsForSplice(await splice(client, pod, signal));
  }
}
