// FaultInjection end to end on a 2-node simulated mesh: an HTTPRoute ExtensionRef filter to a
// weft.dev FaultInjection aborting 50% with 503 lands within +-7% over 400 requests from curl
// (Envoy's FI in the caller agent's access log, weft_fault_injected_total, and the backend
// sees only the requests not aborted); a 50% fixed delay of 300 ms holds about half the
// requests that long and lets them through (DI); gRPC calls (python3-grpcio) aborted with a
// gRPC status get that code.
//
// Cluster: node-1 demo/client; node-2 demo/backend (HTTP on 9080, gRPC on 50051).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRoot } from '../support/root.ts';
import { AccessLog, needsGrpcPython, inPodFast, type Pod } from './capture-support.ts';
import { clientAndServer, DEMO_NAMESPACE, GRPC_REPEAT, l7Scene } from './l7-scene.ts';
import { agentLog, agentMetrics, sample } from './mesh-support.ts';

const VIP = '198.19.0.95';
const N = 400;

const fault = (name: string): string => `{type: ExtensionRef, extensionRef: {group: weft.dev, kind: FaultInjection, name: ${name}}}`;

const MANIFESTS = `${DEMO_NAMESPACE}---
apiVersion: v1
kind: Service
metadata: {name: chaos, namespace: demo}
spec:
  clusterIP: ${VIP}
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: 9080}, {name: grpc, port: 50051, targetPort: 50051}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chaos, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: chaos, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /abort}}]
    filters: [${fault('half-abort')}]
    backendRefs: [{name: chaos, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /delay}}]
    filters: [${fault('half-delay')}]
    backendRefs: [{name: chaos, port: 80}]
  - backendRefs: [{name: chaos, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: chaos-grpc, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: chaos, port: 50051}]
  rules:
  - filters: [${fault('grpc-abort')}]
    backendRefs: [{name: chaos, port: 50051}]
---
apiVersion: weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: half-abort, namespace: demo}
spec:
  abort: {httpStatus: 503, percentage: {value: 50}}
---
apiVersion: weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: half-delay, namespace: demo}
spec:
  delay: {fixedDelay: 300ms, percentage: 50}
---
apiVersion: weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: grpc-abort, namespace: demo}
spec:
  abort: {grpcStatus: UNAVAILABLE, percentage: 100}
${clientAndServer('backend')}`;

const SERVER = `
import grpc, json, threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
hits, lock = {}, threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        with lock:
            if self.path == '/count': body = json.dumps(hits).encode()
            else:
                hits[self.path] = hits.get(self.path, 0) + 1
                body = b'ok'
        self.send_response(200)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(ThreadingHTTPServer):
    daemon_threads = True
threading.Thread(target=S(('0.0.0.0', 9080), H).serve_forever, daemon=True).start()
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler('demo.Api', {'Get': grpc.unary_unary_rpc_method_handler(lambda r, c: b'ok')}),))
server.add_insecure_port('0.0.0.0:50051')
server.start()
print('listening', flush=True)
server.wait_for_termination(timeout=600)
`;

/** curl: `count` requests over kept-alive connections (one curl per 50 URLs), one line per answer: status and seconds. */
async function curlMany(pod: Pod, path: string, count: number): Promise<{ status: number; s: number }[]> {
  const out: { status: number; s: number }[] = [];
  for (let i = 0; i < count; i += 50) {
    const urls = Array.from({ length: Math.min(50, count - i) }, () => `http://${VIP}${path}`);
    const args = urls.flatMap((u, k) => [...(k === 0 ? [] : ['--next']), '-sS', '-o', '/dev/null', '--max-time', '10', '-w', '%{http_code} %{time_total}\\n', u]);
    const r = await inPodFast(pod, ['curl', ...args], 60_000);
    assert.equal(r.status, 0, `curl: ${r.stderr.slice(-1000)}`);
    for (const line of r.stdout.trim().split('\n')) {
      const [code, secs] = line.split(' ');
      out.push({ status: Number(code), s: Number(secs) });
    }
  }
  return out;
}

test(`FaultInjection: a 50% abort lands within +-7% over ${N} requests; a 50% delay holds half; gRPC gets its code`, { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter', 'curl'])) return;
  const python = needsGrpcPython(t);
  if (python === undefined) return;
  const scene = await l7Scene(t, 'fault', MANIFESTS, { 'server.py': SERVER, 'grpc-repeat.py': GRPC_REPEAT });
  const s = scene.status;
  const client = scene.pod('client');
  await scene.serve(t, ['backend'], () => [python, scene.script('server.py')]);
  const log = new AccessLog(agentLog(scene.name, 'node-1'));
  log.mark();

  await t.test(`abort 50%: ${N} requests, 503s within ${N / 2} +- 7%; the backend sees only the rest`, async () => {
    const answers = await curlMany(client, '/abort', N);
    const aborted = answers.filter((a) => a.status === 503).length;
    const ok = answers.filter((a) => a.status === 200).length;
    t.diagnostic(`503: ${aborted}, 200: ${ok} of ${N}`);
    assert.equal(aborted + ok, N);
    assert.ok(Math.abs(aborted / N - 0.5) <= 0.07, `${aborted} of ${N} aborted`);
    const count = await inPodFast(client, ['curl', '-sS', '--max-time', '5', `http://${VIP}/count`]);
    assert.equal((JSON.parse(count.stdout) as Record<string, number>)['/abort'], ok);
    const lines = (await log.settle(N, 10_000)).filter((l) => (l as { path?: string }).path === '/abort') as { flags?: string; status?: number }[];
    assert.equal(lines.filter((l) => l.flags === 'FI' && l.status === 503).length, aborted, 'FI in the access log');
    assert.equal(sample(await agentMetrics(s, 'node-1'), 'weft_fault_injected_total', { fault: 'demo/half-abort', kind: 'abort' }), aborted);
  });

  await t.test('delay 300 ms for 50%: about half the requests take 300 ms or more, all succeed', async () => {
    const answers = await curlMany(client, '/delay', 100);
    const held = answers.filter((a) => a.s >= 0.3).length;
    t.diagnostic(`${held} of 100 held >= 0.3 s`);
    assert.ok(answers.every((a) => a.status === 200));
    assert.ok(held >= 43 && held <= 60, `${held} of 100 held`);
  });

  await t.test('GRPCRoute ExtensionRef: a gRPC abort answers UNAVAILABLE', async () => {
    const r = await inPodFast(client, [python, scene.script('grpc-repeat.py'), `${VIP}:50051`, '/demo.Api/Get', '5'], 60_000);
    assert.equal(r.status, 0, `grpc client: ${r.stdout}\n${r.stderr.slice(-2000)}`);
    assert.deepEqual(JSON.parse(r.stdout), ['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
  });
});
