// GRPCRoute retries end to end on a 2-node simulated mesh, with python3-grpcio on both ends.
// GEP-1731 gives HTTPRoute a `retry` and GRPCRoute none; weft reads Linkerd's annotations on a
// GRPCRoute (`retry.linkerd.io/grpc: unavailable`, `retry.linkerd.io/limit`). A server failing
// every other call with UNAVAILABLE looks healthy through the annotated route: 20 calls, 20 OK,
// 40 at the server, 20 retries in weft_request_retries_total; through a Service without the
// route, half the calls fail.
//
// Cluster: node-1 demo/client; node-2 demo/backend (gRPC on 50051) behind flaky and plain.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRoot } from '../support/root.ts';
import { needsGrpcPython, inPodFast } from './capture-support.ts';
import { clientAndServer, DEMO_NAMESPACE, GRPC_REPEAT, grpcServe, l7Scene, PORTS, serviceYaml } from './l7-scene.ts';
import { agentMetrics, sample } from './mesh-support.ts';

const VIP = { flaky: '198.19.0.97', plain: '198.19.0.98' } as const;
const N = 20;

const service = (name: string, vip: string): string => serviceYaml(name, vip, 'backend', PORTS.grpc);

const MANIFESTS = `${DEMO_NAMESPACE}${service('flaky', VIP.flaky)}${service('plain', VIP.plain)}---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: flaky
  namespace: demo
  annotations: {retry.linkerd.io/grpc: "unavailable", retry.linkerd.io/limit: "2"}
spec:
  parentRefs: [{group: "", kind: Service, name: flaky, port: 50051}]
  rules:
  - backendRefs: [{name: flaky, port: 50051}]
${clientAndServer('backend')}`;

/** demo.Api/Get fails every other call (the 1st, 3rd, ...) with UNAVAILABLE; demo.Api/Count answers how many Get calls came. */
const SERVER = `
import grpc, threading
from concurrent import futures
hits, lock = [0], threading.Lock()
def get(req, ctx):
    with lock:
        hits[0] += 1
        n = hits[0]
    if n % 2 == 1: ctx.abort(grpc.StatusCode.UNAVAILABLE, 'flaky')
    return b'ok'
def count(req, ctx):
    return str(hits[0]).encode()
${grpcServe({ Get: 'get', Count: 'count' })}`;

const COUNT = `
import grpc, sys
print(grpc.insecure_channel(sys.argv[1]).unary_unary('/demo.Api/Count')(b'', timeout=10).decode())
`;

test(`GRPCRoute retry (retry.linkerd.io annotations): a server failing every other call looks healthy over ${N} calls`, { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter'])) return;
  const python = needsGrpcPython(t);
  if (python === undefined) return;
  const scene = await l7Scene(t, 'gretry', MANIFESTS, { 'server.py': SERVER, 'grpc-repeat.py': GRPC_REPEAT, 'count.py': COUNT });
  await scene.serve(t, ['backend'], () => [python, scene.script('server.py')]);
  const client = scene.pod('client');
  const calls = async (vip: string): Promise<string[]> => {
    const r = await inPodFast(client, [python, scene.script('grpc-repeat.py'), `${vip}:50051`, '/demo.Api/Get', String(N)], 60_000);
    assert.equal(r.status, 0, `grpc client: ${r.stdout}\n${r.stderr.slice(-2000)}`);
    return JSON.parse(r.stdout) as string[];
  };
  const hits = async (): Promise<number> => Number((await inPodFast(client, [python, scene.script('count.py'), `${VIP.plain}:50051`], 30_000)).stdout.trim());

  const flaky = await calls(VIP.flaky);
  const atServer = await hits();
  t.diagnostic(`through the route: ${flaky.filter((c) => c === 'OK').length} OK of ${N}; ${atServer} calls at the server`);
  assert.deepEqual(flaky, Array.from({ length: N }, () => 'OK'));
  assert.equal(atServer, 2 * N, 'each call retried once');
  assert.equal(sample(await agentMetrics(scene.status, 'node-1'), 'weft_request_retries_total', { destination_service: 'demo/flaky' }), N);

  const plain = await calls(VIP.plain);
  t.diagnostic(`without the route: ${plain.filter((c) => c === 'OK').length} OK of ${N}`);
  assert.equal(plain.filter((c) => c === 'UNAVAILABLE').length, N / 2, JSON.stringify(plain));
});
