// The control plane's admin endpoint (15015, loopback by default), for `weft control revoke`:
// POST /revoke {"serial"|"node"|"identity": ...} puts the certificates it covers on the CRL,
// pushes the CRL to every agent at once, and for a node also refuses it any further
// certificate or config and ends its config streams. GET /revocations lists what is revoked.
// Every call needs the admin bearer token (a file made, mode 0600, on first start).

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { describeError, isWeftError, WeftError } from '../core/errors.ts';
import { ControlErrors } from '../control/errors.ts';
import { parseRevocationRequest, type RevocationRequest, type Revocations } from '../control/revocations.ts';
// Not the telemetry index: it brings the OpenTelemetry SDK, which the control plane does not use.
import { HttpEndpoint } from '../telemetry/http-endpoints.ts';

export interface RevokeResult {
  readonly revoked: readonly string[];
  readonly node?: string;
  readonly identity?: string;
  /** Config streams ended (a node). */
  readonly disconnected: number;
}

export interface ControlAdminDeps {
  readonly revocations: Revocations;
  /** Puts serials on the CRL and publishes the new CRL to every agent; resolves once pushed. */
  revokeSerials(serials: readonly string[]): Promise<void>;
  /** Ends a node's config streams. */
  disconnect(node: string, why: string): number;
  revokedSerials(): readonly string[];
  readonly logger: Logger;
}

const MAX_BODY = 4096;

/** The admin token from its file, made (random, 0600) when the file does not exist. */
export function adminToken(file: string): string {
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length < 16) throw new WeftError(ControlErrors.BAD_OPTIONS, `the admin token in ${file} is shorter than 16 characters`);
    return token;
  } catch (err: unknown) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(32).toString('base64url');
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return token;
}

/** True when `header` is `Bearer <token>`; constant time in the token's length. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (m === null) return false;
  const given = Buffer.from(m[1] ?? '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/** Carries out one revocation (the HTTP handler's work, apart from HTTP). */
export async function revoke(request: RevocationRequest, deps: ControlAdminDeps): Promise<RevokeResult> {
  const serials = deps.revocations.select(request);
  await deps.revokeSerials(serials);
  const node = 'node' in request ? request.node : undefined;
  const disconnected = node === undefined ? 0 : deps.disconnect(node, `node ${node} was revoked by an operator`);
  deps.logger.warn({ ...request, serials, disconnected }, 'revoked by an operator; the new CRL is pushed to every agent');
  return { revoked: serials, ...(node === undefined ? {} : { node }), ...('identity' in request ? { identity: request.identity } : {}), disconnected };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size > MAX_BODY) {
        reject(new WeftError(ControlErrors.BAD_REVOCATION, `revocation request: the body is over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      parts.push(b);
    });
    req.once('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.once('error', reject);
  });
}

export function startControlAdmin(o: { host: string; port: number; tokenFile: string }, deps: ControlAdminDeps): Promise<HttpEndpoint> {
  const token = adminToken(o.tokenFile);
  const authorized = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (bearerMatches(req.headers.authorization, token)) return true;
    deps.logger.warn({ peer: req.socket.remoteAddress, path: req.url }, 'admin call without the admin token refused');
    json(res, 401, { code: ControlErrors.ADMIN_UNAUTHENTICATED, message: `the admin endpoint needs "authorization: Bearer <token>" with the token in ${o.tokenFile}` });
    return false;
  };
  return HttpEndpoint.start({
    name: 'admin', host: o.host, port: o.port, methods: ['GET', 'POST'], reusePort: false,
    routes: {
      '/revoke': async (req, res) => {
        if (!authorized(req, res)) return;
        if (req.method !== 'POST') {
          json(res, 405, { code: ControlErrors.BAD_REVOCATION, message: 'POST a JSON object with one of serial, node, identity' });
          return;
        }
        let request: RevocationRequest;
        try {
          const text = await readBody(req);
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            throw new WeftError(ControlErrors.BAD_REVOCATION, 'revocation request: the body is not JSON');
          }
          request = parseRevocationRequest(body);
        } catch (err: unknown) {
          json(res, 400, { code: isWeftError(err) ? err.code : ControlErrors.BAD_REVOCATION, message: describeError(err) });
          return;
        }
        json(res, 200, await revoke(request, deps));
      },
      '/revocations': (req, res) => {
        if (!authorized(req, res)) return;
        json(res, 200, { serials: deps.revokedSerials().map((s) => deps.revocations.describe(s)), nodes: deps.revocations.revokedNodes() });
      },
    },
  });
}
