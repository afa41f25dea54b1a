// DestinationPolicy circuit breaking end to end on a 2-node simulated mesh: with
// `connectionPool.http.maxPendingRequests: 10` on a Service whose pod answers after 2 s, 100
// concurrent requests from a pod on the other node (one connection each, python3's
// http.client) get 10 answers and 90 immediate 503s with the flag UO, no queue; the overflow is
// in the caller agent's access log and in weft_request_overflow_total. The same with
// `connectionPool.tcp.maxConnections: 10` on a second Service (`capped`): 10 connections are
// opened, the 90 requests that would need more get 503 UO at once. And
// `http.maxRequestsPerConnection: 5` on a third (`recycled`): 20 requests in a row on one
// client connection reach the pod over exactly 4 connections. And maxConnections 10 on an opaque
// TCP Service (`tcpcap`): of 15 connections held at once, 10 are echoed, 5 refused.
//
// Cluster: node-1 demo/client; node-2 demo/slow (app: slow; HTTP on 9080, each answer after 2 s,
// /fast at once with the number of connections it has seen) behind slow, capped and recycled.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRoot } from '../support/root.ts';
import { AccessLog, inPodFast } from './capture-support.ts';
import { clientAndServer, DEMO_NAMESPACE, l7Scene, destinationPolicyYaml, PORTS, serviceYaml } from './l7-scene.ts';
import { agentLog, agentMetrics } from './mesh-support.ts';

const VIP = '198.19.0.80';
const CAPPED_VIP = '198.19.0.81';
const RECYCLED_VIP = '198.19.0.82';
const MAX_CONNECTIONS = 10;
const PER_CONNECTION = 5;
const TCP_VIP = '198.19.0.83';

const service = (name: string, vip: string, pool: string): string =>
  serviceYaml(name, vip, 'slow', PORTS.http) + destinationPolicyYaml(name, `    connectionPool: ${pool}`);
const CONCURRENT = 100;
const MAX_PENDING = 10;

const MANIFESTS = `${DEMO_NAMESPACE}${service('slow', VIP, `{http: {maxPendingRequests: ${MAX_PENDING}}}`)}${service('capped', CAPPED_VIP, `{tcp: {maxConnections: ${MAX_CONNECTIONS}}}`)}${service('recycled', RECYCLED_VIP, `{http: {maxRequestsPerConnection: ${PER_CONNECTION}}}`)}${serviceYaml('tcpcap', TCP_VIP, 'slow', PORTS.tcp)}${destinationPolicyYaml('tcpcap', `    connectionPool: {tcp: {maxConnections: ${MAX_CONNECTIONS}}}`)}${clientAndServer('slow')}`;

/** `sequence.py HOST N`: N GETs of /fast in a row on one keep-alive connection; prints the bodies. */
const SEQUENCE = `
import http.client, json, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
out = []
for _ in range(int(sys.argv[2])):
    c.request('GET', '/fast')
    out.append(c.getresponse().read().decode())
print(json.dumps(out))
`;

/** `hold.py HOST N`: N TCP connections held open at once, each sends a byte; prints how many got it echoed and how many were cut. */
const HOLD = `
import json, socket, sys
host, n = sys.argv[1], int(sys.argv[2])
echoed, cut, conns = 0, 0, []
for _ in range(n):
    c = socket.create_connection((host, 90), timeout=5)
    conns.append(c)
for c in conns:
    try:
        c.sendall(b'x')
        echoed += 1 if c.recv(1) == b'x' else 0
        cut += 0
    except OSError:
        cut += 1
print(json.dumps({'echoed': echoed, 'cut': cut}))
`;

const SERVER = `
import threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
peers, lock = set(), threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        if self.path.startswith('/fast'):
            with lock:
                peers.add(self.client_address)
                body = str(len([p for p in peers])).encode()
            self.send_response(200)
            self.send_header('content-length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        time.sleep(2)
        self.send_response(200)
        self.send_header('content-length', '4')
        self.end_headers()
        self.wfile.write(b'slow')
    def log_message(self, *a): pass
import socket
def echo(c):
    with c:
        while True:
            d = c.recv(4096)
            if not d: return
            c.sendall(d)
def tcp():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(('0.0.0.0', 9090))
    ls.listen(256)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
threading.Thread(target=tcp, daemon=True).start()
s = ThreadingHTTPServer(('0.0.0.0', 9080), H)
s.daemon_threads = True
s.request_queue_size = 256
print('listening', flush=True)
s.serve_forever()
`;

/** N requests at once, each on its own connection: status, seconds to the answer, body. */
const BURST = `
import http.client, json, sys, threading, time
host, n = sys.argv[1], int(sys.argv[2])
conns = [http.client.HTTPConnection(host, 80, timeout=20) for _ in range(n)]
for c in conns: c.connect()
out, lock, go = [], threading.Lock(), threading.Event()
def one(c):
    go.wait()
    t0 = time.monotonic()
    c.request('GET', '/slow')
    r = c.getresponse()
    body = r.read().decode(errors='replace')
    with lock: out.append({'status': r.status, 's': time.monotonic() - t0, 'body': body[:200]})
ts = [threading.Thread(target=one, args=(c,)) for c in conns]
for t in ts: t.start()
go.set()
for t in ts: t.join()
print(json.dumps(out))
`;

test(`DestinationPolicy maxPendingRequests ${MAX_PENDING} and maxConnections ${MAX_CONNECTIONS}: of ${CONCURRENT} concurrent slow requests the overflow gets 503 UO at once, the rest succeed; maxRequestsPerConnection ${PER_CONNECTION} recycles`, { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter', 'python3'])) return;
  const scene = await l7Scene(t, 'cbreak', MANIFESTS, { 'server.py': SERVER, 'burst.py': BURST, 'sequence.py': SEQUENCE, 'hold.py': HOLD });
  await scene.serve(t, ['slow'], () => ['python3', scene.script('server.py')]);
  const log = new AccessLog(agentLog(scene.name, 'node-1'));
  log.mark();

  // maxRequestsPerConnection: 20 requests in a row, one client connection; /fast says how many pod connections it has seen.
  const seq = await inPodFast(scene.pod('client'), ['python3', scene.script('sequence.py'), RECYCLED_VIP, '20'], 30_000);
  assert.equal(seq.status, 0, `sequence: ${seq.stdout}\n${seq.stderr.slice(-2000)}`);
  const seen = JSON.parse(seq.stdout) as string[];
  t.diagnostic(`recycled: pod connections seen after each request: ${seen.join(' ')}`);
  assert.equal(seen.length, 20);
  assert.deepEqual(seen, seen.map((_, i) => String(Math.ceil((i + 1) / PER_CONNECTION))), `a new connection every ${PER_CONNECTION} requests`);

  const r = await inPodFast(scene.pod('client'), ['python3', scene.script('burst.py'), VIP, String(CONCURRENT)], 120_000);
  assert.equal(r.status, 0, `burst: ${r.stdout}\n${r.stderr.slice(-2000)}`);
  const out = JSON.parse(r.stdout) as { status: number; s: number; body: string }[];
  const ok = out.filter((x) => x.status === 200);
  const overflow = out.filter((x) => x.status === 503);
  t.diagnostic(`200: ${ok.length} (slowest ${Math.max(...ok.map((x) => x.s)).toFixed(2)} s), 503: ${overflow.length} (slowest ${Math.max(...overflow.map((x) => x.s)).toFixed(2)} s)`);
  assert.equal(out.length, CONCURRENT);
  assert.equal(ok.length, MAX_PENDING, `exactly ${MAX_PENDING} answered: ${JSON.stringify(out.map((x) => x.status))}`);
  assert.equal(overflow.length, CONCURRENT - MAX_PENDING);
  assert.ok(ok.every((x) => x.s >= 1.9 && x.body === 'slow'), 'the admitted ones waited for the pod');
  assert.ok(overflow.every((x) => x.s < 1.5 && /overflow/.test(x.body)), `the overflow answered at once: ${JSON.stringify(overflow.slice(0, 3))}`);

  const lines = (await log.settle(CONCURRENT, 10_000)).filter((l) => (l as { path?: string }).path === '/slow');
  assert.equal(lines.filter((l) => (l as { flags?: string }).flags === 'UO').length, CONCURRENT - MAX_PENDING, 'UO in the access log');
  assert.match(await agentMetrics(scene.status, 'node-1'), new RegExp(`^weft_request_overflow_total\\{destination_service="demo/slow"\\} ${CONCURRENT - MAX_PENDING}$`, 'm'));

  // maxConnections: the same burst on `capped`.
  const c = await inPodFast(scene.pod('client'), ['python3', scene.script('burst.py'), CAPPED_VIP, String(CONCURRENT)], 120_000);
  assert.equal(c.status, 0, `burst: ${c.stdout}\n${c.stderr.slice(-2000)}`);
  const capped = JSON.parse(c.stdout) as { status: number; s: number; body: string }[];
  const cappedOk = capped.filter((x) => x.status === 200);
  const cappedOver = capped.filter((x) => x.status === 503);
  t.diagnostic(`capped: 200: ${cappedOk.length}, 503: ${cappedOver.length} (slowest ${Math.max(...cappedOver.map((x) => x.s)).toFixed(2)} s)`);
  assert.equal(cappedOk.length, MAX_CONNECTIONS, `exactly ${MAX_CONNECTIONS} connections' worth answered: ${JSON.stringify(capped.map((x) => x.status))}`);
  assert.equal(cappedOver.length, CONCURRENT - MAX_CONNECTIONS);
  assert.ok(cappedOver.every((x) => x.s < 1.5 && /overflow/.test(x.body)), `the overflow answered at once: ${JSON.stringify(cappedOver.slice(0, 3))}`);
  assert.match(await agentMetrics(scene.status, 'node-1'), new RegExp(`^weft_request_overflow_total\\{destination_service="demo/capped"\\} ${CONCURRENT - MAX_CONNECTIONS}$`, 'm'));

  // maxConnections on opaque TCP: of 15 connections held at once, 10 are served, 5 refused (UO).
  const h = await inPodFast(scene.pod('client'), ['python3', scene.script('hold.py'), TCP_VIP, '15'], 60_000);
  assert.equal(h.status, 0, `hold: ${h.stdout}\n${h.stderr.slice(-2000)}`);
  const held = JSON.parse(h.stdout) as { echoed: number; cut: number };
  t.diagnostic(`tcpcap: ${held.echoed} echoed, ${held.cut} cut of 15 held at once`);
  assert.deepEqual(held, { echoed: MAX_CONNECTIONS, cut: 15 - MAX_CONNECTIONS });
});
