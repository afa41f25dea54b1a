// HTTPRoute retry (GEP-1731) and the retry budget end to end on a 2-node simulated mesh. A
// backend that fails every other request (503) looks healthy to a client whose route sets
// `retry`: every GET succeeds, and so does every PUT with a 1 KiB body (idempotent, its body
// buffered whole and sent again); a POST is not retried (not idempotent), nor is a request on a
// rule without `retry`. With the backend failing every request, the Service's retry budget
// (DestinationPolicy retryBudget: 20% of requests, no per-second reserve) holds the retries,
// counted at the backend, to 20% above the request rate although the route allows 3 per
// request; the access log says URX and the metrics count retries and budget refusals.
//
// Cluster: node-1 demo/client; node-2 demo/backend (HTTP on 9080) behind two Services, flaky
// (Linkerd's default budget) and down (the 20% budget).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRoot } from '../support/root.ts';
import { AccessLog, inPodFast } from './capture-support.ts';
import { clientAndServer, DEMO_NAMESPACE, l7Scene, PACED_LOAD, PORTS, serviceYaml } from './l7-scene.ts';
import { agentLog, agentMetrics, sample } from './mesh-support.ts';

const VIP = { flaky: '198.19.0.90', down: '198.19.0.91' } as const;
const RATE = 50;
const SECONDS = 10;

const service = (name: string, vip: string): string => serviceYaml(name, vip, 'backend', PORTS.http);

/** A route on the Service `name`: requests under `prefix` retried on 503 up to 3 times, the rest not. */
const retryRoute = (name: string, prefix: string): string => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: ${name}, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: ${prefix}}}]
    backendRefs: [{name: ${name}, port: 80}]
    retry: {codes: [503], attempts: 3, backoff: 10ms}
  - backendRefs: [{name: ${name}, port: 80}]
`;

const MANIFESTS = `${DEMO_NAMESPACE}${service('flaky', VIP.flaky)}${service('down', VIP.down)}${retryRoute('flaky', '/retry')}${retryRoute('down', '/down')}---
apiVersion: weft.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: down, namespace: demo}
spec:
  targetRef: {kind: Service, name: down}
  trafficPolicy:
    retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 0, ttl: 10s}
${clientAndServer('backend')}`;

/** Counts hits per path: /down/* always 503, any other path 503 on its 1st, 3rd, ... hit; /count answers the tallies. */
const SERVER = `
import json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
hits, bodies, lock = {}, {}, threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def answer(self, status, body):
        self.send_response(status)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def handle_any(self):
        n = int(self.headers.get('content-length') or 0)
        body = self.rfile.read(n) if n else b''
        if self.path == '/count':
            with lock: tally = json.dumps({'hits': hits, 'bodies': bodies}).encode()
            self.answer(200, tally)
            return
        with lock:
            k = hits[self.path] = hits.get(self.path, 0) + 1
            seen = bodies.setdefault(self.path, [])
            if len(body) not in seen: seen.append(len(body))
        fail = self.path.startswith('/down') or k % 2 == 1
        self.answer(503 if fail else 200, b'fail' if fail else b'ok')
    do_GET = do_PUT = do_POST = handle_any
    def log_message(self, *a): pass
class S(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
server = S(('0.0.0.0', 9080), H)
print('listening', flush=True)
server.serve_forever()
`;

/** n requests in a row on one keep-alive connection: statuses counted. */
const SEQ = `
import http.client, json, sys
host, method, path, n, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
c = http.client.HTTPConnection(host, 80, timeout=10)
counts = {}
for _ in range(n):
    c.request(method, path, body=(b'x' * size) if size else None)
    r = c.getresponse()
    r.read()
    counts[r.status] = counts.get(r.status, 0) + 1
print(json.dumps(counts))
`;

interface Tally { hits: Record<string, number>; bodies: Record<string, number[]> }

test('HTTPRoute retry: a backend failing every other request looks healthy; with it failing all, the retry budget holds retries to 20% over the requests', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter', 'python3'])) return;
  const scene = await l7Scene(t, 'retry', MANIFESTS, { 'server.py': SERVER, 'seq.py': SEQ, 'load.py': PACED_LOAD });
  const s = scene.status;
  const client = scene.pod('client');
  await scene.serve(t, ['backend'], () => ['python3', scene.script('server.py')]);
  const seq = async (method: string, path: string, n: number, size = 0): Promise<Record<string, number>> => {
    const r = await inPodFast(client, ['python3', scene.script('seq.py'), VIP.flaky, method, path, String(n), String(size)], 60_000);
    assert.equal(r.status, 0, `${method} ${path}: ${r.stdout}\n${r.stderr.slice(-2000)}`);
    return JSON.parse(r.stdout) as Record<string, number>;
  };
  const tally = async (): Promise<Tally> => {
    const r = await inPodFast(client, ['curl', '-sS', '--max-time', '5', `http://${VIP.flaky}/count`]);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as Tally;
  };
  const log = new AccessLog(agentLog(scene.name, 'node-1'));
  log.mark();

  await t.test('retry set: 100 GETs to a backend failing every other request all succeed, one retry each', async () => {
    assert.deepEqual(await seq('GET', '/retry/get', 100), { 200: 100 });
    assert.equal((await tally()).hits['/retry/get'], 200, 'the backend saw each request twice');
  });

  await t.test('no retry on the rule: the same backend fails every other request', async () => {
    assert.deepEqual(await seq('GET', '/plain/get', 100), { 200: 50, 503: 50 });
  });

  await t.test('a PUT with a 1 KiB body (buffered whole) is retried with its body; a POST is not retried', async () => {
    assert.deepEqual(await seq('PUT', '/retry/put', 20, 1024), { 200: 20 });
    assert.deepEqual(await seq('POST', '/retry/post', 20, 1024), { 200: 10, 503: 10 });
    const c = await tally();
    assert.equal(c.hits['/retry/put'], 40);
    assert.deepEqual(c.bodies['/retry/put'], [1024], 'every attempt carried the whole body');
    assert.equal(c.hits['/retry/post'], 20);
  });

  await t.test(`backend failing all: ${RATE} req/s for ${SECONDS} s, retries counted at the backend stay within 20% of the requests`, async () => {
    const r = await inPodFast(client, ['python3', scene.script('load.py'), VIP.down, '/down/x', String(RATE), String(SECONDS)], 90_000);
    assert.equal(r.status, 0, `load: ${r.stdout}\n${r.stderr.slice(-2000)}`);
    const requests = RATE * SECONDS;
    assert.deepEqual((JSON.parse(r.stdout) as { counts: unknown }).counts, { 503: requests });
    const hits = (await tally()).hits['/down/x'] ?? 0;
    const retries = hits - requests;
    t.diagnostic(`${requests} requests, ${hits} attempts at the backend: ${retries} retries (${(100 * retries / requests).toFixed(1)}%; without the budget ${3 * requests})`);
    // Each worker's budget allows 0.2 x its requests; rounding down costs each at most one.
    assert.ok(retries <= 0.2 * requests, `${retries} retries exceed 20% of ${requests}`);
    assert.ok(retries >= 0.2 * requests - 4, `${retries} retries: the budget was not used`);
  });

  await t.test('access log and metrics: retries per request, URX when retries ran out, budget refusals counted', async () => {
    const lines = (await log.settle(740, 10_000)) as { path?: string; flags?: string; retries?: number; status?: number }[];
    const gets = lines.filter((l) => l.path === '/retry/get');
    assert.equal(gets.length, 100);
    assert.ok(gets.every((l) => l.retries === 1 && l.status === 200 && l.flags === '-'), JSON.stringify(gets.slice(0, 2)));
    const down = lines.filter((l) => l.path === '/down/x');
    assert.equal(down.length, RATE * SECONDS);
    assert.ok(down.every((l) => l.flags === 'URX' && l.status === 503), JSON.stringify(down.find((l) => l.flags !== 'URX')));
    const text = await agentMetrics(s, 'node-1');
    assert.equal(sample(text, 'weft_request_retries_total', { destination_service: 'demo/flaky' }), 120, 'GET and PUT retries');
    const downRetries = down.reduce((n, l) => n + (l.retries ?? 0), 0);
    assert.equal(sample(text, 'weft_request_retries_total', { destination_service: 'demo/down' }), downRetries);
    assert.ok(sample(text, 'weft_retry_budget_exhausted_total', { destination_service: 'demo/down' }) >= RATE * SECONDS - downRetries - 4);
  });
});
