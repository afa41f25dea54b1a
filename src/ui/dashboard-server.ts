// The dashboard's HTTP side: the page's static files (shipped in src/ui/static/, the graph
// library from node_modules; no CDN) and /api/mesh, the model as JSON. Loopback by default;
// requests must name the server by an IP address or localhost (a page on another site cannot
// read it through DNS rebinding).

import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { join } from 'node:path';

import { HttpEndpoint, type RouteHandler } from '../telemetry/http-endpoints.ts';
import type { DashboardModel } from './dashboard-model.ts';

export interface DashboardServerOptions {
  readonly host: string;
  readonly port: number;
  readonly model: () => Promise<DashboardModel>;
}

const STATIC = join(import.meta.dirname, 'static');

interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

function assets(): Record<string, Asset> {
  const require = createRequire(import.meta.url);
  const file = (path: string, type: string): Asset => ({ type, body: readFileSync(path) });
  const index = file(join(STATIC, 'index.html'), 'text/html; charset=utf-8');
  return {
    '/': index,
    '/index.html': index,
    '/app.js': file(join(STATIC, 'app.js'), 'text/javascript; charset=utf-8'),
    '/style.css': file(join(STATIC, 'style.css'), 'text/css; charset=utf-8'),
    '/vendor/cytoscape.min.js': file(require.resolve('cytoscape/dist/cytoscape.min.js'), 'text/javascript; charset=utf-8'),
  };
}

const HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** Host header: an IP literal or localhost, with an optional port. */
export function acceptableHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || isIP(name) !== 0;
}

function guarded(handler: RouteHandler): RouteHandler {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (!acceptableHost(req.headers.host)) {
      res.writeHead(421, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('the dashboard answers only to an IP address or localhost\n');
      return;
    }
    return handler(req, res);
  };
}

export function startDashboard(o: DashboardServerOptions): Promise<HttpEndpoint> {
  const routes: Record<string, RouteHandler> = {};
  for (const [path, a] of Object.entries(assets())) {
    routes[path] = guarded((_req, res) => {
      res.writeHead(200, { 'content-type': a.type, 'cache-control': 'no-cache', ...HEADERS });
      res.end(a.body);
    });
  }
  routes['/api/mesh'] = guarded(async (_req, res) => {
    const model = await o.model();
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', ...HEADERS });
    res.end(JSON.stringify(model));
  });
  return HttpEndpoint.start({ name: 'dashboard', host: o.host, port: o.port, routes, reusePort: false });
}
