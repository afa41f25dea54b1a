// DestinationPolicy outlierDetection end to end on a 2-node simulated mesh. Service `web` has
// three pods; `bad` answers 500 to everything, `good-1` and `good-2` answer 200. With
// consecutive5xxErrors 3 and baseEjectionTime 4 s, a client on the other node sending a
// steady 20 req/s over one keep-alive connection (one agent worker) sees exactly three 500s,
// all from `bad`, then none for the 4 s `bad` is ejected; then `bad` is tried again, answers
// three more 500s and is ejected again, for twice as long (8 s), then three more and a third
// ejection. The caller agent counts the three ejections in weft_outlier_ejections_total. Without the policy the
// balancer's own failure accrual would pass 7 in a row before ejecting (the first count
// tells them apart).
//
// Cluster: node-1 demo/client; node-2 demo/bad, demo/good-1, demo/good-2 (app: web, HTTP on 9080).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRoot } from '../support/root.ts';
import { inPodFast } from './capture-support.ts';
import { DEMO_NAMESPACE, l7Scene, podYaml, destinationPolicyYaml, PORTS, serviceYaml } from './l7-scene.ts';
import { agentMetrics } from './mesh-support.ts';

const VIP = '198.19.0.95';
const CONSECUTIVE = 3;
const BASE_S = 4;
const RATE = 20;
const SECONDS = 15;

const MANIFESTS = `${DEMO_NAMESPACE}${serviceYaml('web', VIP, 'web', PORTS.http)}${destinationPolicyYaml('web',
  `    outlierDetection: {consecutive5xxErrors: ${CONSECUTIVE}, interval: 1s, baseEjectionTime: ${BASE_S}s, maxEjectionPercent: 50}`)}${podYaml('client', 'node-1', { serves: false })}${podYaml('bad', 'node-2', { app: 'web' })}${podYaml('good-1', 'node-2', { app: 'web' })}${podYaml('good-2', 'node-2', { app: 'web' })}`;

/** `server.py NAME STATUS`: answers every GET with STATUS and its name. */
const SERVER = `
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name, status = sys.argv[1].encode(), int(sys.argv[2])
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        self.send_response(status)
        self.send_header('content-length', str(len(name)))
        self.end_headers()
        self.wfile.write(name)
    def log_message(self, *a): pass
s = ThreadingHTTPServer(('0.0.0.0', 9080), H)
s.daemon_threads = True
print('listening', flush=True)
s.serve_forever()
`;

/** `steady.py HOST RATE SECONDS`: one keep-alive connection paced at RATE; prints [[t, status, body], ...]. */
const STEADY = `
import http.client, json, sys, time
host, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
c = http.client.HTTPConnection(host, 80, timeout=10)
out, start, i = [], time.monotonic(), 0
while start + i / rate < start + seconds:
    time.sleep(max(0, start + i / rate - time.monotonic()))
    t = time.monotonic() - start
    c.request('GET', '/')
    r = c.getresponse()
    out.append([round(t, 3), r.status, r.read().decode(errors='replace')[:40]])
    i += 1
print(json.dumps(out))
`;

test(`DestinationPolicy outlierDetection: a pod answering 500 is ejected after ${CONSECUTIVE} in a row, tried again after ${BASE_S} s, counted`, { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter', 'python3'])) return;
  const scene = await l7Scene(t, 'outlr', MANIFESTS, { 'server.py': SERVER, 'steady.py': STEADY });
  await scene.serve(t, ['bad', 'good-1', 'good-2'], (pod) => ['python3', scene.script('server.py'), pod, pod === 'bad' ? '500' : '200']);

  const r = await inPodFast(scene.pod('client'), ['python3', scene.script('steady.py'), VIP, String(RATE), String(SECONDS)], 60_000);
  assert.equal(r.status, 0, `steady: ${r.stdout}\n${r.stderr.slice(-2000)}`);
  const out = JSON.parse(r.stdout) as [number, number, string][];
  const fails = out.filter(([, status]) => status >= 500);
  const answeredBy = new Set(out.map(([, , body]) => body));
  t.diagnostic(`${out.length} requests; 500s at ${fails.map(([at]) => at.toFixed(2)).join(', ')} s; answered by ${[...answeredBy].join(', ')}`);
  assert.equal(out.length, RATE * SECONDS);
  assert.ok(answeredBy.has('good-1') && answeredBy.has('good-2'), 'both good pods served');
  assert.ok(fails.every(([, status, body]) => status === 500 && body === 'bad'), 'every 5xx is bad\'s own answer');
  assert.equal(fails.length, 3 * CONSECUTIVE, `three rounds of three 500s, each ended by an ejection: ${JSON.stringify(fails)}`);
  const at = (i: number): number => fails[i]?.[0] ?? assert.fail(`500 number ${i + 1}`);
  // Each round's three come together (bad is the fastest pod, so P2C likes it).
  for (const round of [0, 1, 2]) assert.ok(at(round * CONSECUTIVE + CONSECUTIVE - 1) - at(round * CONSECUTIVE) < 1.5, `round ${round + 1} is three in a row`);
  // Ejected for base x ejections: nothing from bad for 4 s, then 8 s; then it is picked again within a second or so.
  const gaps = [at(CONSECUTIVE) - at(CONSECUTIVE - 1), at(2 * CONSECUTIVE) - at(2 * CONSECUTIVE - 1)];
  assert.ok(gaps[0] >= BASE_S - 0.1 && gaps[0] < BASE_S + 1.5, `bad came back ${gaps[0].toFixed(2)} s after its first ejection`);
  assert.ok(gaps[1] >= 2 * BASE_S - 0.1 && gaps[1] < 2 * BASE_S + 1.5, `and ${gaps[1].toFixed(2)} s after its second`);
  const okWhileOut = out.filter(([t0, status]) => t0 > at(CONSECUTIVE - 1) && t0 < at(CONSECUTIVE) && status === 200).length;
  assert.ok(okWhileOut >= (BASE_S - 0.5) * RATE, `the good pods served everything while bad was out: ${okWhileOut}`);

  const metrics = await agentMetrics(scene.status, 'node-1');
  assert.match(metrics, /^weft_outlier_ejections_total\{destination_service="demo\/web"\} 3$/m);
  assert.doesNotMatch(metrics, /^weft_outlier_ejections_refused_total\{destination_service="demo\/web"\}/m);
});
