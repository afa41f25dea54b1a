// HTTP/1.1 Upgrade (WebSocket) and CONNECT through the mesh: the request is routed and
// balanced like any other, then its head is re-sent on a fresh upstream connection (direct
// or a tunnel stream) and the two connections are spliced byte for byte, the server's 101
// (or whatever it answers) included. Local refusals are written as plain HTTP/1.1 answers.

import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

import { classifyConnectFailure } from '../connect-failure.ts';
import type { Authorizer } from '../contracts.ts';
import { addressOf, peerOf } from '../describe.ts';
import { ResponseFlags } from '../flags.ts';
import type { Ending } from '../listener.ts';
import { endpointKey } from '../load-balancer.ts';
import { endpointTarget, planHop } from '../outbound-route.ts';
import { flagsForSplice } from '../splice-flags.ts';
import { splice, type SpliceSide } from '../splice.ts';
import type { UpstreamConnector, UpstreamStream } from '../upstream.ts';
import type { HttpMeshView } from './contracts.ts';
import { authorizeEndpoint } from './authorization-step.ts';
import type { Exchange, RequestStep } from './exchange.ts';
import type { OutHeaders } from './headers.ts';
import { sendLocalReply } from './local-reply.ts';
import type { ResponseHead, ResponseSink } from './messages.ts';
import type { RequestBalancer } from './request-balancer.ts';
import type { Endpoint } from '../../model/types.ts';

export interface UpgradeDeps {
  readonly nodeName: string;
  readonly mesh: HttpMeshView;
  readonly authorize: Authorizer;
  readonly balancer: RequestBalancer;
  readonly connector: UpstreamConnector;
  readonly maxAttempts: number;
}

/** A response written as raw HTTP/1.1 on a socket that left the parser (local refusals only). */
export class RawResponseSink implements ResponseSink {
  readonly #socket: Duplex;
  #started = false;
  #bytes = 0;

  constructor(socket: Duplex) {
    this.#socket = socket;
  }

  get started(): boolean {
    return this.#started;
  }

  get bytes(): number {
    return this.#bytes;
  }

  start(head: ResponseHead): void {
    if (this.#started) return;
    this.#started = true;
    const lines = [`HTTP/1.1 ${head.status} ${statusText(head.status)}`, 'connection: close'];
    for (const [name, v] of Object.entries(head.headers)) for (const one of typeof v === 'string' ? [v] : v) lines.push(`${name}: ${one}`);
    this.#socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  }

  write(chunk: Buffer): boolean {
    this.#bytes += chunk.length;
    return this.#socket.write(chunk);
  }

  onDrain(resume: () => void): void {
    this.#socket.once('drain', resume);
  }

  end(): void {
    this.#socket.end();
  }

  abort(): void {
    this.#socket.destroy();
  }
}

function statusText(status: number): string {
  const texts: Record<number, string> = { 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };
  return texts[status] ?? (status < 400 ? 'OK' : 'Error');
}

/** The request head to send upstream: the outgoing parts plus the Upgrade handshake fields. */
export function upgradeHead(req: IncomingMessage, x: Exchange): string {
  const headers: OutHeaders = { ...x.outgoing.headers };
  if (x.outgoing.authority !== undefined) headers.host = x.outgoing.authority;
  const upgrade = req.headers.upgrade;
  if (req.method !== 'CONNECT' && upgrade !== undefined) {
    headers.connection = 'upgrade';
    headers.upgrade = upgrade;
  }
  const lines = [`${req.method ?? 'GET'} ${x.outgoing.path} HTTP/1.1`];
  for (const [name, v] of Object.entries(headers)) for (const one of typeof v === 'string' ? [v] : v) lines.push(`${name}: ${one}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** `HTTP/1.1 101 ...` -> 101; 0 when the bytes are not a status line. */
export function statusOf(chunk: Buffer): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'));
  return m === null ? 0 : Number(m[1]);
}

/**
 * The last step for an upgrade: connects to an endpoint, re-sends the head and splices.
 * Its Ending (the splice's) is handed to `done`; `x.status` gets the server's answer.
 */
export function upgradeStep(deps: UpgradeDeps, req: IncomingMessage, socket: SpliceSide, head: Buffer, done: (e: Ending) => void): RequestStep {
  return async (x) => {
    const c = x.connection;
    const d = x.decision;
    let endpoints: readonly Endpoint[];
    if (d?.kind === 'forward') endpoints = deps.mesh.endpoints(d.backend.serviceKey, d.backend.port);
    else if (c.destination.kind === 'service') endpoints = c.destination.endpoints;
    else {
      const t = c.destination.target;
      endpoints = [{ ip: t.ip, port: t.port, node: t.workload?.node, workload: t.workload?.key, weight: 1 }];
    }
    const tried = new Set<string>();
    let failure = 'no endpoint could be picked';
    for (let attempt = 0; attempt < deps.maxAttempts; attempt++) {
      const e = deps.balancer.pick(endpoints, tried);
      if (e === undefined) break;
      const key = endpointKey(e);
      tried.add(key);
      const target = endpointTarget(deps.mesh, e);
      x.destination = peerOf(target.workload, addressOf(target.ip, target.port));
      if (!authorizeEndpoint(deps.authorize, x, target)) return;
      const hop = planHop(deps.mesh, deps.nodeName, target);
      if (hop.kind === 'unreachable') {
        failure = hop.detail;
        continue;
      }
      const inFlight = deps.balancer.start(key);
      let upstream: UpstreamStream;
      const t0 = performance.now();
      try {
        upstream = await deps.connector.connect({ hop, sourceIdentity: c.sourceIdentity, clientIp: c.clientIp, signal: x.signal });
      } catch (err: unknown) {
        inFlight.done(false);
        const f = classifyConnectFailure({ error: err, drained: x.live.signal.aborted, clientGone: x.signal.aborted || socket.destroyed });
        if (f.kind === 'stop') {
          sendLocalReply(x, { status: f.ending[0] === ResponseFlags.DENIED ? 403 : 503, flags: f.ending[0], message: 'upstream refused', detail: f.ending[1] });
          return;
        }
        failure = f.ending[1] ?? '';
        continue;
      }
      x.security = c.security ?? (hop.kind === 'tunnel' ? 'mutual_tls' : 'none');
      x.upstream = key;
      upstream.write(upgradeHead(req, x));
      if (head.length > 0) upstream.write(head);
      upstream.once('data', (chunk: Buffer) => {
        x.status = statusOf(chunk);
        inFlight.done(x.status > 0 && x.status < 500, performance.now() - t0);
      });
      const spliced = splice(socket, upstream, x.live.signal);
      socket.resume();
      const result = await spliced;
      inFlight.done(false);
      const ending = flagsForSplice(result);
      x.flags = ending[0];
      if (ending[1] !== undefined) x.detail = ending[1];
      done(ending);
      return;
    }
    sendLocalReply(x, { status: 503, flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, message: 'upstream connect error', detail: failure });
  };
}
