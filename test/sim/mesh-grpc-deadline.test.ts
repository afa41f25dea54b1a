// gRPC deadlines end to end on a 2-node simulated mesh, with python3-grpcio on both ends. A
// call with a 5 s deadline reaches the server (which reads its own time left) with just under
// 5 s; the same call on a GRPCRoute rule that delays it 1 s (a FaultInjection) arrives with
// about 4 s left: the caller's agent passes grpc-timeout on, shortened by the time it spent. A
// call whose server outlasts its deadline ends DEADLINE_EXCEEDED. And the agent enforces the
// deadline itself: curl (which does not) sends a call with `grpc-timeout: 1S` to a server that
// takes 5 s and gets a trailers-only DEADLINE_EXCEEDED after about a second, flag UT in the
// caller agent's access log; the server sees the call cancelled.
//
// Cluster: node-1 demo/client; node-2 demo/backend (gRPC on 50051).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { AccessLog, needsGrpcPython, inPodFast, startInPod } from './capture-support.ts';
import { clientAndServer, DEMO_NAMESPACE, grpcServe, l7Scene, PORTS, serviceYaml } from './l7-scene.ts';
import { agentLog } from './mesh-support.ts';

const VIP = '198.19.0.96';

const MANIFESTS = `${DEMO_NAMESPACE}${serviceYaml('api', VIP, 'backend', PORTS.grpc)}---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: api, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 50051}]
  rules:
  - matches: [{method: {service: demo.Api, method: Held}}]
    filters: [{type: ExtensionRef, extensionRef: {group: weft.dev, kind: FaultInjection, name: hold}}]
    backendRefs: [{name: api, port: 50051}]
  - backendRefs: [{name: api, port: 50051}]
---
apiVersion: weft.dev/v1alpha1
kind: FaultInjection
metadata: {name: hold, namespace: demo}
spec:
  delay: {fixedDelay: 1s, percentage: 100}
${clientAndServer('backend')}`;

/** Remaining and Held answer the time the call has left as the server sees it; Slow takes 5 s unless cancelled, and logs which. */
const SERVER = `
import grpc, time
from concurrent import futures
def remaining(req, ctx):
    left = ctx.time_remaining()
    return ('none' if left is None else '%.3f' % left).encode()
calls = [0]
def slow(req, ctx):
    calls[0] += 1
    n, t0 = calls[0], time.monotonic()
    while ctx.is_active() and time.monotonic() - t0 < 5: time.sleep(0.02)
    print('slow %d %s after %.2f s' % (n, 'cancelled' if not ctx.is_active() else 'finished', time.monotonic() - t0), flush=True)
    return b'done'
${grpcServe({ Remaining: 'remaining', Held: 'remaining', Slow: 'slow' })}`;

const CLIENT = `
import grpc, json, sys, time
ch = grpc.insecure_channel(sys.argv[1])
out = {}
out['remaining'] = ch.unary_unary('/demo.Api/Remaining')(b'', timeout=5).decode()
out['held'] = ch.unary_unary('/demo.Api/Held')(b'', timeout=5).decode()
t0 = time.monotonic()
try:
    ch.unary_unary('/demo.Api/Slow')(b'', timeout=1)
    out['slow'] = 'OK'
except grpc.RpcError as e:
    out['slow'] = e.code().name
out['slow_s'] = time.monotonic() - t0
print(json.dumps(out))
`;

test('gRPC deadlines: grpc-timeout passed on less the time spent; enforced by the agent with DEADLINE_EXCEEDED, UT', { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter', 'curl'])) return;
  const python = needsGrpcPython(t);
  if (python === undefined) return;
  const scene = await l7Scene(t, 'dline', MANIFESTS, { 'server.py': SERVER, 'client.py': CLIENT });
  // An empty gRPC message: flag 0, length 0.
  writeFileSync(join(scene.dir, 'empty.bin'), Buffer.alloc(5));
  const server = startInPod(scene.pod('backend'), [python, scene.script('server.py')]);
  t.after(() => server.stop());
  await server.waitLine(/^listening$/, 30_000);
  const log = new AccessLog(agentLog(scene.name, 'node-1'));
  log.mark();

  const r = await inPodFast(scene.pod('client'), [python, scene.script('client.py'), `${VIP}:50051`], 60_000);
  assert.equal(r.status, 0, `client: ${r.stdout}\n${r.stderr.slice(-2000)}`);
  const out = JSON.parse(r.stdout) as { remaining: string; held: string; slow: string; slow_s: number };
  t.diagnostic(`server saw ${out.remaining} s left (5 s deadline), ${out.held} s after a 1 s hold; Slow: ${out.slow} after ${out.slow_s.toFixed(2)} s`);
  assert.ok(Number(out.remaining) > 4.5 && Number(out.remaining) <= 5, `passed on: ${out.remaining}`);
  // The server counts from when the call reached it, so without shortening both would read ~5 s.
  const shortenedBy = Number(out.remaining) - Number(out.held);
  assert.ok(shortenedBy > 0.9 && shortenedBy < 1.3, `shortened by the 1 s the agent held it: ${out.held} (${shortenedBy.toFixed(3)} s less)`);
  assert.equal(out.slow, 'DEADLINE_EXCEEDED');

  // curl keeps no deadline of its own: what ends the call at 1 s is the agent.
  const c = await inPodFast(scene.pod('client'), [
    'curl', '-sS', '--http2-prior-knowledge', '--max-time', '10', '-o', '/dev/null', '-D', '-', '-w', 'time %{time_total}\\n',
    '-H', 'content-type: application/grpc', '-H', 'te: trailers', '-H', 'grpc-timeout: 1S',
    '--data-binary', `@${join(scene.dir, 'empty.bin')}`, `http://${VIP}:50051/demo.Api/Slow`,
  ], 30_000);
  assert.equal(c.status, 0, `curl: ${c.stderr}`);
  const secs = Number(/^time ([0-9.]+)$/m.exec(c.stdout)?.[1]);
  t.diagnostic(`curl: ${c.stdout.replace(/\r?\n/g, ' | ')}`);
  assert.match(c.stdout, /^HTTP\/2 200/m);
  assert.match(c.stdout, /^grpc-status: 4\r?$/m, 'DEADLINE_EXCEEDED, trailers-only');
  assert.ok(secs >= 0.95 && secs < 2, `ended at the deadline: ${secs} s`);
  const entries = (await log.settle(4, 10_000)) as { path?: string; flags?: string; grpc_status?: string }[];
  const slowLines = entries.filter((l) => l.path === '/demo.Api/Slow');
  assert.ok(slowLines.some((l) => l.flags === 'UT'), `UT in the access log: ${JSON.stringify(slowLines)}`);
  // The second Slow call (curl's) was cancelled at the server when the agent's deadline ran out.
  await server.waitLine(/^slow 2 cancelled after (0\.9[0-9]|1\.[0-4][0-9]) s$/, 10_000);
});
