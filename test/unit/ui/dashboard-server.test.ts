// The dashboard's HTTP side on loopback: the page, its script and the vendored graph library
// (no CDN: every asset from this server), /api/mesh as JSON, refusals of a foreign Host
// (DNS rebinding) and of other methods.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'node:http';

import { acceptableHost, startDashboard, type DashboardModel } from '../../../src/ui/index.ts';

function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let body = '';
      res.on('data', (b: Buffer) => { body += b.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('serves the page and its assets from itself, and the model as JSON', async (t) => {
  const model = { generatedAt: 1, source: 'agents', topology: { nodes: [], edges: [] } } as unknown as DashboardModel;
  const server = await startDashboard({ host: '127.0.0.1', port: 0, model: () => Promise.resolve(model) });
  t.after(() => server.close());
  const port = server.address.port;
  const page = await get(port, '/');
  assert.equal(page.status, 200);
  assert.match(page.type, /text\/html/);
  const srcs = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '');
  assert.ok(srcs.length >= 3);
  for (const src of srcs) {
    if (src.startsWith('#')) continue;
    assert.ok(src.startsWith('/'), `${src} is served by the dashboard itself, not a CDN`);
    assert.equal((await get(port, src)).status, 200, src);
  }
  const lib = await get(port, '/vendor/cytoscape.min.js');
  assert.match(lib.body.slice(0, 2000), /cytoscape/i);
  const api = await get(port, '/api/mesh');
  assert.deepEqual(JSON.parse(api.body), model);
  assert.equal((await get(port, '/api/mesh', { host: 'evil.example:15080' })).status, 421);
  assert.equal((await get(port, '/api/mesh', {}, 'POST')).status, 405);
  assert.equal((await get(port, '/nope')).status, 404);
});

test('acceptableHost: IP literals and localhost only', () => {
  const cases: Array<[string | undefined, boolean]> = [
    ['127.0.0.1:15080', true], ['localhost:8080', true], ['[::1]:15080', true], ['198.18.0.2', true],
    ['evil.example', false], ['evil.example:15080', false], [undefined, false], ['127.0.0.1.nip.io', false],
  ];
  for (const [host, ok] of cases) assert.equal(acceptableHost(host), ok, String(host));
});

test('PrometheusSource: one query per metric name, results summed per edge; falls back to the agents with a note', async () => {
  const { PrometheusSource, familyQueries } = await import('../../../src/ui/index.ts');
  assert.equal(familyQueries().bytes.length, 2, 'sent and received bytes are queried apart (rate() drops the name)');
  for (const qs of Object.values(familyQueries())) for (const q of qs) assert.match(q, /^sum by \(.+\) \(rate\(\w+\{[^}]*\}\[\d+m\]\)\)$/);
  const seen: string[] = [];
  const fake: typeof fetch = (input) => {
    const q = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url).searchParams.get('query') ?? '';
    seen.push(q);
    const result = q.includes('istio_tcp_sent_bytes_total') || q.includes('istio_tcp_received_bytes_total')
      ? [{ metric: { reporter: 'source', source_workload: 'a' }, value: [0, '5'] }] : [];
    return Promise.resolve(new Response(JSON.stringify({ status: 'success', data: { resultType: 'vector', result } })));
  };
  const fallback = { rates: () => Promise.reject(new Error('not asked')) };
  const rates = await new PrometheusSource({ url: 'http://p:9090/', fallback, fetch: fake }).rates();
  assert.equal(rates.source, 'prometheus');
  assert.deepEqual(rates.bytes.map((r) => r.rate), [5, 5]);
  assert.ok(seen.includes('up{job="weft-agent"} == 0'));
  const down: typeof fetch = () => Promise.reject(new Error('connection refused'));
  const agents = { rates: () => Promise.resolve({ ...rates, source: 'agents' as const }) };
  const fell = await new PrometheusSource({ url: 'http://p:9090', fallback: agents, fetch: down }).rates();
  assert.equal(fell.source, 'agents');
  assert.match(fell.note ?? '', /Prometheus at http:\/\/p:9090 did not answer .*connection refused.*showing what the agents report directly/);
});
