import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Counter, Registry } from 'prom-client';

import { isWeftError } from '../../../src/core/errors.ts';
import { HttpEndpoint, metricsRoutes, readinessRoutes, startAdminServer } from '../../../src/telemetry/http-endpoints.ts';
import { parseMetrics, total } from '../proxy/metrics-text.ts';

async function get(e: HttpEndpoint, path: string, method = 'GET'): Promise<{ status: number; body: string; type: string | null }> {
  const r = await fetch(`http://${e.address.address}:${e.address.port}${path}`, { method });
  return { status: r.status, body: await r.text(), type: r.headers.get('content-type') };
}

test('metrics endpoint serves the registry it is given', async (t) => {
  const registry = new Registry();
  new Counter({ name: 'weft_test_total', help: 'test', registers: [registry] }).inc(3);
  const e = await HttpEndpoint.start({ name: 'metrics', host: '127.0.0.1', port: 0, routes: metricsRoutes(registry) });
  t.after(() => e.close());
  const r = await get(e, '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.type ?? '', /text\/plain/);
  assert.equal(total(parseMetrics(r.body), 'weft_test_total'), 3);
  assert.equal((await get(e, '/stats/prometheus')).status, 200);
  assert.equal((await get(e, '/nope')).status, 404);
  assert.equal((await get(e, '/metrics', 'POST')).status, 405);
});

test('readiness answers 200 or 503 with the reason', async (t) => {
  let ready = false;
  const e = await HttpEndpoint.start({
    name: 'readiness', host: '127.0.0.1', port: 0, routes: readinessRoutes(() => (ready ? { ready } : { ready, reason: 'no config yet' })),
  });
  t.after(() => e.close());
  const before = await get(e, '/healthz/ready');
  assert.equal(before.status, 503);
  assert.match(before.body, /no config yet/);
  ready = true;
  assert.equal((await get(e, '/healthz/ready')).status, 200);
});

test('admin server: loopback only, takes handlers, lists them, turns handler errors into 500', async (t) => {
  await assert.rejects(startAdminServer({ host: '0.0.0.0', port: 0, routes: {} }), (e: unknown) => isWeftError(e, 'WEFT_TELEMETRY_ADMIN_NOT_LOOPBACK'));
  const admin = await startAdminServer({
    port: 0,
    routes: {
      '/config_dump': (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ workloads: 2 }));
      },
      '/boom': () => {
        throw new Error('kaput');
      },
    },
  });
  t.after(() => admin.close());
  assert.equal(admin.address.address, '127.0.0.1');
  assert.deepEqual(JSON.parse((await get(admin, '/config_dump')).body), { workloads: 2 });
  assert.equal((await get(admin, '/')).body, '/boom\n/config_dump\n');
  const boom = await get(admin, '/boom');
  assert.equal(boom.status, 500);
  assert.match(boom.body, /kaput/);
  await admin.close();
  await admin.close();
});

test('a port in use is reported by code', async (t) => {
  const first = await HttpEndpoint.start({ name: 'metrics', host: '127.0.0.1', port: 0, routes: {}, reusePort: false });
  t.after(() => first.close());
  await assert.rejects(HttpEndpoint.start({ name: 'metrics', host: '127.0.0.1', port: first.address.port, routes: {}, reusePort: false }),
    (e: unknown) => isWeftError(e, 'WEFT_TELEMETRY_LISTEN_FAILED'));
});
