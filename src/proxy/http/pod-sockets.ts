// The HTTP layer's pod-side sockets: the pooled direct connections to pods (calls to a pod of
// this node, and the destination side of tunnelled HTTP). Each one the pools open themselves
// takes a descriptor from the agent's connection caps, charged to the client's address, so a
// pod's keep-alive pool cannot get around its per-source cap nor take the descriptors others
// need. Every one, the adopted connection a tunnel stream came with included, resets if the
// agent dies (SO_LINGER 0 until a close of ours), so a pod never takes a request cut by a
// crash as whole.

import { Socket } from 'node:net';

import { ProxyErrors, proxyError } from '../errors.ts';
import type { SocketCloser } from '../splice.ts';
import { afterClose, type UpstreamRequest, type UpstreamStream } from '../upstream.ts';

/** Opens upstream streams (the UpstreamConnector, or PodSockets over it). */
export interface UpstreamConnect {
  connect(r: UpstreamRequest): Promise<UpstreamStream>;
}

/** Descriptors from the agent's connection caps (ConnectionCaps); declared here, where it is used. */
export interface DescriptorAllowance {
  /** Takes `cost` descriptors for a socket of `sourceIp`'s; a refusal says why. */
  take(sourceIp: string, cost: number, listener: 'http-pool'): { readonly detail?: string } | undefined;
  give(sourceIp: string, cost: number): void;
}

/**
 * A client socket or pod socket that resets its connection only if the agent dies: it lingers 0
 * from now on, so the kernel answers the process's death with RST (the peer must not take a
 * cut message as whole); every close this process makes itself first turns lingering off
 * again. Those are a response cut by its upstream, a keep-alive timeout, a drain or a parser
 * refusal: there the peer sees what it would without the mesh (a FIN, and HTTP's own framing
 * says the rest), and a deliberate reset (resetSide) still resets. Wrapping `destroy` catches
 * every such close, Node's and undici's own included (timeouts, auto-destroy after both ends),
 * since all go through it.
 */
export function resetOnlyIfAgentDies(socket: Socket, closer: SocketCloser): void {
  closer.resetOnClose(socket);
  const destroy = socket.destroy.bind(socket);
  socket.destroy = (error?: Error): Socket => {
    closer.finOnClose(socket);
    return destroy(error);
  };
  // Once our FIN has gone out what was sent is whole: a death after it loses nothing.
  socket.once('finish', () => closer.finOnClose(socket));
}

export class PodSockets implements UpstreamConnect {
  readonly #connector: UpstreamConnect;
  readonly #allowance: DescriptorAllowance | undefined;
  readonly #closer: SocketCloser | undefined;
  #charged = 0;
  #held = 0;

  constructor(connector: UpstreamConnect, o: { allowance?: DescriptorAllowance | undefined; closer?: SocketCloser | undefined } = {}) {
    this.#connector = connector;
    this.#allowance = o.allowance;
    this.#closer = o.closer;
  }

  /** Pod sockets the pools opened and hold now (each holds a descriptor of the caps). */
  get charged(): number {
    return this.#charged;
  }

  /** Every pod socket the layer holds now: those it opened and those it was handed (own()). */
  get held(): number {
    return this.#held;
  }

  /**
   * A direct hop takes a descriptor first (refused with WEFT_PROXY_OVERLOADED when the caps
   * are reached, before any connect); a tunnel stream is no descriptor of its own.
   */
  async connect(r: UpstreamRequest): Promise<UpstreamStream> {
    if (r.hop.kind !== 'direct') return this.#connector.connect(r);
    const allowance = this.#allowance;
    const refused = allowance?.take(r.clientIp, 1, 'http-pool');
    if (refused !== undefined) {
      throw proxyError(ProxyErrors.OVERLOADED, `no pooled connection to ${r.hop.target.ip}:${r.hop.target.port}: ${refused.detail ?? 'the connection caps are reached'}`);
    }
    let stream: UpstreamStream;
    try {
      stream = await this.#connector.connect(r);
    } catch (err: unknown) {
      allowance?.give(r.clientIp, 1);
      throw err;
    }
    this.#charged += 1;
    afterClose(stream, () => {
      this.#charged -= 1;
      allowance?.give(r.clientIp, 1);
    });
    if (stream instanceof Socket) this.own(stream);
    return stream;
  }

  /** A pod socket the layer now holds (one made elsewhere: a tunnel stream's own, charged with its stream): it resets if the agent dies. */
  own(socket: Socket): void {
    this.#held += 1;
    afterClose(socket, () => {
      this.#held -= 1;
    });
    if (this.#closer !== undefined) resetOnlyIfAgentDies(socket, this.#closer);
  }
}
