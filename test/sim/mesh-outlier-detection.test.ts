// DestinationPolicy outlierDetection end to end on a 2-node simulated mesh. Service `web` has
// three pods; `bad` answers 500 to everything, `good-1` and `good-2` answer 200. With
// consecutive5xxErrors 3 and baseEjectionTime 4 s, a client on the other node sending a
// steady 20 req/s for 20 s over one keep-alive connection (one agent worker) sees bad's 500s
// in rounds of three, each followed by at least 4 s without one (ejected for base x ejections;
// the good pods serve everything meanwhile), then bad is tried again: at least two rounds. The
// caller agent counts one ejection per round in weft_outlier_ejections_total. Without the
// policy the balancer's own failure accrual would pass 7 in a row before ejecting (the gap
// after the third tells them apart). When bad is picked again is the balancer's choice (P2C
// over peak-EWMA may avoid it for seconds after a slow answer), so it is not timed.
//
// Cluster: node-1 demo/client; node-2 demo/bad, demo/good-1, demo/good-2 (app: web, HTTP on 9080).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRoot } from '../support/root.ts';
import { inPodFast } from './capture-support.ts';
import { DEMO_NAMESPACE, l7Scene, podYaml, destinationPolicyYaml, PORTS, serviceYaml } from './l7-scene.ts';
import { agentMetrics, eventually } from './mesh-support.ts';

const VIP = '198.19.0.95';
const CONSECUTIVE = 3;
const BASE_S = 4;
const RATE = 20;
const SECONDS = 20;
/**
 * The good pods answer this much later than bad, so that P2C over peak-EWMA prefers bad
 * whenever it is in the pool: without it a slow first answer of bad (a new connection) kept the
 * balancer away from it for up to 18 s, and the test timed the balancer, not the ejection.
 */
const GOOD_DELAY_S = '0.03';

const MANIFESTS = `${DEMO_NAMESPACE}${serviceYaml('web', VIP, 'web', PORTS.http)}${destinationPolicyYaml('web',
  `    outlierDetection: {consecutive5xxErrors: ${CONSECUTIVE}, interval: 1s, baseEjectionTime: ${BASE_S}s, maxEjectionPercent: 50}`)}${podYaml('client', 'node-1', { serves: false })}${podYaml('bad', 'node-2', { app: 'web' })}${podYaml('good-1', 'node-2', { app: 'web' })}${podYaml('good-2', 'node-2', { app: 'web' })}`;

/** `server.py NAME STATUS DELAY_S`: answers every GET with STATUS and its name, DELAY_S after it came. */
const SERVER = `
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
name, status, delay = sys.argv[1].encode(), int(sys.argv[2]), float(sys.argv[3])
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        time.sleep(delay)
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
  await scene.serve(t, ['bad', 'good-1', 'good-2'], (pod) => ['python3', scene.script('server.py'), pod, pod === 'bad' ? '500' : '200', pod === 'bad' ? '0' : GOOD_DELAY_S]);

  const r = await inPodFast(scene.pod('client'), ['python3', scene.script('steady.py'), VIP, String(RATE), String(SECONDS)], 60_000);
  assert.equal(r.status, 0, `steady: ${r.stdout}\n${r.stderr.slice(-2000)}`);
  const out = JSON.parse(r.stdout) as [number, number, string][];
  const fails = out.filter(([, status]) => status >= 500);
  const answeredBy = new Set(out.map(([, , body]) => body));
  t.diagnostic(`${out.length} requests; 500s at ${fails.map(([at]) => at.toFixed(2)).join(', ')} s; answered by ${[...answeredBy].join(', ')}`);
  assert.equal(out.length, RATE * SECONDS);
  assert.ok(answeredBy.has('good-1') && answeredBy.has('good-2'), 'both good pods served');
  assert.ok(fails.every(([, status, body]) => status === 500 && body === 'bad'), 'every 5xx is bad\'s own answer');
  // Every answer of bad is a 500, so its 500s are its consecutive 5xx: each CONSECUTIVE of them
  // end in an ejection (the last round may be cut short by the end of the run). When bad is
  // picked again is the balancer's business (P2C over peak-EWMA may avoid it for a while after
  // a slow answer), so what is asserted is the ejection: nothing from bad for at least the
  // ejection time after each round, and it comes back.
  const ejections = Math.floor(fails.length / CONSECUTIVE);
  assert.ok(ejections >= 2, `at least two rounds of ${CONSECUTIVE} 500s, each ended by an ejection: ${JSON.stringify(fails)}`);
  const at = (i: number): number => fails[i]?.[0] ?? assert.fail(`500 number ${i + 1}`);
  for (let round = 1; round < Math.ceil(fails.length / CONSECUTIVE); round++) {
    const gap = at(round * CONSECUTIVE) - at(round * CONSECUTIVE - 1);
    // Failure accrual alone would pass 7 in a row before ejecting: this tells them apart.
    assert.ok(gap >= BASE_S - 0.1, `after ${round * CONSECUTIVE} 500s bad was out for at least ${BASE_S} s: back after ${gap.toFixed(2)} s`);
  }
  // The second ejection lasts twice the base, unless a healthy interval (1 s) back in the pool lowered the multiplier first.
  if (fails.length > 2 * CONSECUTIVE && at(2 * CONSECUTIVE - 1) - at(CONSECUTIVE - 1) < BASE_S + 1) {
    const gap = at(2 * CONSECUTIVE) - at(2 * CONSECUTIVE - 1);
    assert.ok(gap >= 2 * BASE_S - 0.1, `the second ejection lasts ${2 * BASE_S} s: back after ${gap.toFixed(2)} s`);
  }
  // While bad was out every request was answered 200 by a good pod, and the client kept going:
  // its pace is one request after another, so a loaded machine (the full suite) may slow it
  // below RATE; half of it is still far from the stall of a request waiting on an ejected pod.
  const whileOut = out.filter(([t0]) => t0 > at(CONSECUTIVE - 1) && t0 < at(CONSECUTIVE));
  assert.ok(whileOut.every(([, status, body]) => status === 200 && body.startsWith('good-')), `only the good pods served while bad was out: ${JSON.stringify(whileOut.filter(([, status]) => status !== 200))}`);
  const outFor = at(CONSECUTIVE) - at(CONSECUTIVE - 1);
  assert.ok(whileOut.length >= outFor * RATE / 2, `the good pods kept serving while bad was out: ${whileOut.length} requests in ${outFor.toFixed(2)} s`);

  // The workers' counters reach the agent's /metrics a moment after the last request.
  const counted = new RegExp(`^weft_outlier_ejections_total\\{destination_service="demo/web"\\} ${ejections}$`, 'm');
  const metrics = await eventually(async () => {
    const text = await agentMetrics(scene.status, 'node-1');
    return counted.test(text) ? text : undefined;
  }, 5000) ?? await agentMetrics(scene.status, 'node-1');
  assert.match(metrics, counted, 'one ejection per round');
  assert.doesNotMatch(metrics, /^weft_outlier_ejections_refused_total\{destination_service="demo\/web"\}/m);
});
