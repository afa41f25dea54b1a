// Small HTTP servers for the agent's side ports: metrics (15020), readiness (15021) and the
// admin server (15000, loopback only). Each is a table of exact paths to handlers, so the
// app can add e.g. /config_dump without this module knowing about config.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';

import type { Registry } from 'prom-client';

import { describeError } from '../core/errors.ts';
import { TelemetryErrors, telemetryError } from './errors.ts';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;
export type Routes = Readonly<Record<string, RouteHandler>>;

export interface HttpEndpointOptions {
  /** For messages: 'metrics', 'readiness', 'admin'. */
  readonly name: string;
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly routes: Routes;
  /** Methods accepted on every route. Default GET and HEAD. */
  readonly methods?: readonly string[];
  /** SO_REUSEPORT, so a restarted agent can bind beside the old one. Default true. */
  readonly reusePort?: boolean;
}

export class HttpEndpoint {
  readonly name: string;
  readonly address: AddressInfo;
  readonly #server: Server;
  #closing: Promise<void> | undefined;

  private constructor(name: string, server: Server, address: AddressInfo) {
    this.name = name;
    this.#server = server;
    this.address = address;
  }

  static async start(o: HttpEndpointOptions): Promise<HttpEndpoint> {
    const methods = new Set(o.methods ?? ['GET', 'HEAD']);
    const server = createServer((req, res) => {
      void serve(o.routes, methods, req, res);
    });
    const address = await new Promise<AddressInfo>((resolve, reject) => {
      server.once('error', (err: Error) => {
        reject(telemetryError(TelemetryErrors.LISTEN_FAILED, `${o.name} server cannot listen on ${o.host}:${o.port}: ${err.message}`, err));
      });
      server.listen({ host: o.host, port: o.port, reusePort: o.reusePort ?? true }, () => resolve(server.address() as AddressInfo));
    });
    return new HttpEndpoint(o.name, server, address);
  }

  /** Stops listening and closes open connections. Safe to repeat. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closing;
  }
}

async function serve(routes: Routes, methods: ReadonlySet<string>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
  const handler = Object.hasOwn(routes, path) ? routes[path] : undefined;
  if (handler === undefined) {
    reply(res, 404, `no handler for ${path}\n`);
    return;
  }
  if (!methods.has(req.method ?? 'GET')) {
    res.setHeader('allow', [...methods].join(', '));
    reply(res, 405, `method ${req.method ?? '?'} not allowed\n`);
    return;
  }
  try {
    await handler(req, res);
  } catch (err: unknown) {
    if (!res.headersSent) reply(res, 500, `${describeError(err)}\n`);
    else res.destroy();
  }
}

function reply(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(body);
}

/** `/metrics` (and Istio's `/stats/prometheus`) in the Prometheus text format. */
export function metricsRoutes(registry: Registry): Routes {
  const handler: RouteHandler = async (_req, res) => {
    const body = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(body);
  };
  return { '/metrics': handler, '/stats/prometheus': handler };
}

export interface Readiness {
  readonly ready: boolean;
  /** Why not, for the 503 body. */
  readonly reason?: string;
  /** Said beside a 200 (e.g. serving the last good config from disk). */
  readonly note?: string;
}

/** `/healthz/ready`: 200 when `check()` says ready, 503 with the reason otherwise. */
export function readinessRoutes(check: () => Readiness): Routes {
  return {
    '/healthz/ready': (_req, res) => {
      const r = check();
      reply(res, r.ready ? 200 : 503, r.ready ? `ready${r.note === undefined ? '' : `: ${r.note}`}\n` : `not ready: ${r.reason ?? 'starting'}\n`);
    },
  };
}

export interface AdminServerOptions {
  /** Must be a loopback address. Default 127.0.0.1. */
  readonly host?: string;
  readonly port: number;
  readonly routes: Routes;
  readonly reusePort?: boolean;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** The admin server: loopback only, any method (handlers decide), `/` lists the routes. */
export function startAdminServer(o: AdminServerOptions): Promise<HttpEndpoint> {
  const host = o.host ?? '127.0.0.1';
  if (!isLoopback(host)) {
    return Promise.reject(telemetryError(TelemetryErrors.ADMIN_NOT_LOOPBACK, `the admin server must listen on a loopback address, not ${JSON.stringify(host)}`));
  }
  const index: RouteHandler = (_req, res) => reply(res, 200, `${Object.keys(o.routes).sort().join('\n')}\n`);
  return HttpEndpoint.start({
    name: 'admin', host, port: o.port, reusePort: o.reusePort,
    routes: { '/': index, ...o.routes }, methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
  });
}
