// The inbound decision, shared by the tunnel (15008) and plaintext (15006) listeners: is the
// target a pod on this node in the mesh, is it the identity the client asked for, and does
// policy allow this source. Pure over the mesh view and authorizer.

import { isIP } from 'node:net';

import type { AuthorizationDecision, AuthorizationRequest } from '../model/authorize.ts';
import { tryParseSpiffeId } from '../model/spiffe.ts';
import type { Workload } from '../model/types.ts';
import type { Authorizer, MeshView, SocketAddress } from './contracts.ts';
import { ResponseFlags, type ResponseFlag } from './flags.ts';

export interface InboundRequest {
  readonly nodeName: string;
  readonly target: SocketAddress;
  /** Verified SPIFFE id of the peer; undefined for plaintext. */
  readonly sourcePrincipal: string | undefined;
  /** The principal's namespace when the caller already knows it (parsed from the principal otherwise). */
  readonly sourceNamespace?: string;
  readonly sourceIp: string;
  /** The identity the client asked for by server name (tunnel only). */
  readonly requestedIdentity?: string;
  /** Each request on the connection will be checked with its HTTP attributes (the stream carries HTTP to this agent's HTTP layer). */
  readonly perRequest?: boolean;
}

export type Admission =
  | {
    readonly ok: true;
    readonly workload: Workload;
    readonly decision: AuthorizationDecision;
    /** The request policy allowed (what a live re-check evaluates again). */
    readonly request: AuthorizationRequest;
  }
  | {
    readonly ok: false;
    /** HTTP status for the tunnel's answer. */
    readonly status: 400 | 403 | 421;
    readonly flags: ResponseFlag;
    readonly detail: string;
    readonly workload?: Workload;
  };

export function admitInbound(mesh: Pick<MeshView, 'workloadByIp'>, authorize: Authorizer, req: InboundRequest): Admission {
  const where = `${req.target.address}:${req.target.port}`;
  const workload = mesh.workloadByIp(req.target.address);
  // 421 (misdirected): the client's view of the mesh is stale; it may try another endpoint.
  if (workload === undefined) return { ok: false, status: 421, flags: ResponseFlags.BAD_REQUEST, detail: `${where} is no known pod` };
  if (workload.node !== req.nodeName) {
    return { ok: false, status: 421, flags: ResponseFlags.BAD_REQUEST, detail: `${where} (${workload.key}) is not on node ${req.nodeName}`, workload };
  }
  if (!workload.enrolled) {
    return { ok: false, status: 421, flags: ResponseFlags.BAD_REQUEST, detail: `${where} (${workload.key}) is not in the mesh`, workload };
  }
  if (req.requestedIdentity !== undefined && req.requestedIdentity !== workload.identity) {
    return {
      ok: false, status: 421, flags: ResponseFlags.BAD_REQUEST, workload,
      detail: `${where} (${workload.key}) is ${workload.identity}, not the ${req.requestedIdentity} the client asked for`,
    };
  }
  const request: AuthorizationRequest = {
    sourcePrincipal: req.sourcePrincipal,
    sourceNamespace: req.sourceNamespace ?? (req.sourcePrincipal === undefined ? undefined : tryParseSpiffeId(req.sourcePrincipal)?.namespace),
    sourceIp: req.sourceIp,
    destinationWorkload: workload,
    destinationPort: req.target.port,
    ...(req.perRequest === true ? { http: 'per-request' as const } : {}),
  };
  const decision = authorize(request);
  if (!decision.allowed) {
    return { ok: false, status: 403, flags: ResponseFlags.DENIED, detail: `denied: ${decision.reason}`, workload };
  }
  return { ok: true, workload, decision, request };
}

/** `ip:port` or `[ipv6]:port` with a literal IP and a port in 1..65535; undefined otherwise. */
export function parseAuthority(authority: string | undefined): SocketAddress | undefined {
  if (authority === undefined) return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(authority);
  if (m === null) return undefined;
  const address = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (isIP(address) === 0 || port < 1 || port > 65535) return undefined;
  return { address, port };
}

/** The `for=` address of a Forwarded header (first element), when it is a literal IP. */
export function parseForwardedFor(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  const m = /(?:^|[;,\s])for=("?)\[?([0-9a-fA-F:.]+)\]?\1/i.exec(value);
  const ip = m?.[2];
  return ip !== undefined && isIP(ip) !== 0 ? ip : undefined;
}
