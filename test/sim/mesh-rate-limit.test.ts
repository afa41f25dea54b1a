// RateLimitPolicy end to end on a 2-node simulated mesh: a 10 req/s policy on a Service, a
// client on the other node offering 50 req/s for 10 s over five keep-alive connections: 100-110
// succeed, the rest get 429 with retry-after (the destination agent decides, one budget for all
// its workers); a gRPC client (python3-grpcio) gets RESOURCE_EXHAUSTED past a burst of 2; the
// same policy in Shadow mode refuses nothing and counts what it would have refused.
//
// A caller on the pod's own node is limited the same way (its agent is the destination agent).
// The L4 variant (`connections`: new connections per second) on an opaque TCP port: past the
// burst, new connections are reset, cross-node (the destination agent answers the tunnel's
// CONNECT with 429) and same-node, and counted in weft_rate_limited_connections_total.
//
// Cluster: node-1 demo/client; node-2 demo/limited, demo/shadow, demo/grpc, demo/local,
// demo/conn (the servers) and demo/neighbour (a caller beside them). Each server answers HTTP
// on 9080, gRPC on 50051 and a line of TCP on 9090.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRoot } from '../support/root.ts';
import { needsGrpcPython, inPodFast } from './capture-support.ts';
import { DEMO_NAMESPACE, GRPC_REPEAT, l7Scene, podYaml, PACED_LOAD } from './l7-scene.ts';
import { agentMetrics } from './mesh-support.ts';

const VIP = { limited: '198.19.0.70', shadow: '198.19.0.71', grpc: '198.19.0.72', local: '198.19.0.73', conn: '198.19.0.74' } as const;

function manifests(): string {
  const app = (name: string, vip: string, limit: string): string => `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: demo}
spec:
  clusterIP: ${vip}
  selector: {app: ${name}}
  ports: [{name: http, port: 80, targetPort: 9080}, {name: grpc, port: 50051, targetPort: 50051}, {name: tcp, port: 90, targetPort: 9090}]
${podYaml(name, 'node-2')}---
apiVersion: weft.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: ${name}, namespace: demo}
spec:
  targetRef: {kind: Service, name: ${name}}
${limit}`;
  return `${DEMO_NAMESPACE}${podYaml('client', 'node-1', { serves: false })}${podYaml('neighbour', 'node-2', { serves: false })}${app('limited', VIP.limited, '  total: {requestsPerSecond: 10}\n')}${app('local', VIP.local, '  total: {requestsPerSecond: 1, burst: 5}\n')}${app('shadow', VIP.shadow, '  total: {requestsPerSecond: 10}\n  mode: Shadow\n')}${app('grpc', VIP.grpc, '  perSource: {requestsPerSecond: 1, burst: 2}\n')}${app('conn', VIP.conn, '  connections: {perSecond: 1, burst: 5}\n')}`;
}

const SERVER = `
import grpc, socketserver, sys, threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Line(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(b'ok\\n')
socketserver.ThreadingTCPServer.allow_reuse_address = True
threading.Thread(target=socketserver.ThreadingTCPServer(('0.0.0.0', 9090), Line).serve_forever, daemon=True).start()
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        self.send_response(200)
        self.send_header('content-length', '2')
        self.end_headers()
        self.wfile.write(b'ok')
    def log_message(self, *a): pass
threading.Thread(target=ThreadingHTTPServer(('0.0.0.0', 9080), H).serve_forever, daemon=True).start()
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler('demo.Api', {'Get': grpc.unary_unary_rpc_method_handler(lambda r, c: b'ok')}),))
server.add_insecure_port('0.0.0.0:50051')
server.start()
print('listening', flush=True)
server.wait_for_termination(timeout=600)
`;

/** `connect.py VIP PORT N`: N new connections one after another, each sends a line and reads the answer; how many got one. */
const CONNECT = `
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = refused = 0
t0 = time.monotonic()
for _ in range(n):
    s = None
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b'x\\n')
        if s.makefile('rb').readline() == b'ok\\n': ok += 1
        else: refused += 1
    except OSError:
        refused += 1
    finally:
        if s is not None: s.close()
print(json.dumps({'ok': ok, 'refused': refused, 'elapsed': time.monotonic() - t0}))
`;

test('RateLimitPolicy: 10 req/s offered 50 req/s for 10 s lets 100-110 through, 429 the rest; gRPC RESOURCE_EXHAUSTED; Shadow only counts', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter'])) return;
  const python = needsGrpcPython(t);
  if (python === undefined) return;
  const scene = await l7Scene(t, 'rlimit', manifests(), { 'server.py': SERVER, 'load.py': PACED_LOAD, 'grpc-repeat.py': GRPC_REPEAT, 'connect.py': CONNECT });
  const client = scene.pod('client');
  await scene.serve(t, ['limited', 'shadow', 'grpc', 'local', 'conn'], () => [python, scene.script('server.py')]);
  const load = (vip: string, rate: number, seconds: number): string[] => [python, scene.script('load.py'), vip, '/x', String(rate), String(seconds)];

  await t.test('enforced: 100-110 of 500 succeed, the rest 429 with retry-after', async () => {
    const r = await inPodFast(client, load(VIP.limited, 50, 10), 60_000);
    assert.equal(r.status, 0, `load: ${r.stdout}\n${r.stderr.slice(-2000)}`);
    const out = JSON.parse(r.stdout) as { counts: Record<string, number>; retry_after: string[]; elapsed: number };
    t.diagnostic(`statuses ${JSON.stringify(out.counts)}, retry-after ${out.retry_after.join(',')}, ${out.elapsed.toFixed(2)} s`);
    const ok = out.counts['200'] ?? 0;
    const limited = out.counts['429'] ?? 0;
    assert.equal(ok + limited, 500, `only 200 and 429: ${JSON.stringify(out.counts)}`);
    assert.ok(ok >= 100 && ok <= 110, `${ok} succeeded`);
    assert.deepEqual(out.retry_after, ['1'], 'retry-after: 1 (s) on every 429');
  });

  await t.test('a caller on the same node (no tunnel): the same limit, at its agent', async () => {
    const r = await inPodFast(scene.pod('neighbour'), load(VIP.local, 50, 0.4), 30_000);
    assert.equal(r.status, 0, `load: ${r.stdout}\n${r.stderr.slice(-2000)}`);
    const counts = (JSON.parse(r.stdout) as { counts: Record<string, number> }).counts;
    // The burst of 5, one more if a whole second's fill fell inside the 0.4 s.
    const ok = counts['200'] ?? 0;
    assert.ok(ok === 5 || ok === 6, JSON.stringify(counts));
    assert.equal(counts['429'], 20 - ok, JSON.stringify(counts));
  });

  await t.test('connections per second (L4): past a burst of 5 new connections are reset, cross-node and same-node; counted', async () => {
    let refused = 0;
    for (const [caller, where] of [['client', 'cross-node'], ['neighbour', 'same-node']] as const) {
      const r = await inPodFast(scene.pod(caller), [python, scene.script('connect.py'), VIP.conn, '90', '20'], 30_000);
      assert.equal(r.status, 0, `connect.py: ${r.stdout}\n${r.stderr.slice(-2000)}`);
      const out = JSON.parse(r.stdout) as { ok: number; refused: number; elapsed: number };
      t.diagnostic(`${where}: ${JSON.stringify(out)}`);
      // The burst of 5 (refilled by the time the second caller starts), one more per whole second's fill inside the run.
      assert.ok(out.ok >= 5 && out.ok <= 5 + Math.ceil(out.elapsed), `${where}: ${JSON.stringify(out)}`);
      assert.equal(out.ok + out.refused, 20);
      refused += out.refused;
      await new Promise((resolve) => setTimeout(resolve, 5000));
    }
    const text = await agentMetrics(scene.status, 'node-2');
    const m = /^weft_rate_limited_connections_total\{[^}]*policy="demo\/conn"[^}]*mode="enforce"[^}]*\} (\d+)$/m.exec(text);
    assert.equal(Number(m?.[1]), refused, `node-2 counted each refused connection once: ${m?.[0] ?? 'no series'}`);
  });

  await t.test('gRPC: a burst of 2 then 1/s per source: RESOURCE_EXHAUSTED past the burst', async () => {
    const r = await inPodFast(client, [python, scene.script('grpc-repeat.py'), `${VIP.grpc}:50051`, '/demo.Api/Get', '6'], 60_000);
    assert.equal(r.status, 0, `grpc client: ${r.stdout}\n${r.stderr.slice(-2000)}`);
    const codes = JSON.parse(r.stdout) as string[];
    assert.deepEqual(codes.slice(0, 2), ['OK', 'OK'], codes.join(','));
    assert.ok(codes.slice(2).filter((c) => c === 'RESOURCE_EXHAUSTED').length >= 3, codes.join(','));
  });

  await t.test('Shadow: nothing refused, what would have been is counted', async () => {
    const r = await inPodFast(client, load(VIP.shadow, 50, 2), 60_000);
    assert.equal(r.status, 0, `load: ${r.stdout}\n${r.stderr.slice(-2000)}`);
    assert.deepEqual((JSON.parse(r.stdout) as { counts: Record<string, number> }).counts, { 200: 100 });
    const text = await agentMetrics(scene.status, 'node-2');
    assert.match(text, /^weft_rate_limited_requests_total\{[^}]*policy="demo\/shadow"[^}]*mode="shadow"[^}]*\} ([6-9][0-9])$/m);
    assert.match(text, /^weft_rate_limited_requests_total\{[^}]*policy="demo\/limited"[^}]*mode="enforce"[^}]*\} (39[0-9]|400)$/m);
  });
});
