// The node proxy's HTTP layer end to end on a 2-node simulated mesh, with real clients and
// servers in the pods (Debian's python3-grpcio and python3-websockets): one gRPC channel's
// unary calls spread over every pod of a 4-pod Service across nodes; a server stream of
// 1,000 messages arrives whole with its status; a server-first banner (port 25) comes with
// no more delay than on a port declared `tcp-`; a WebSocket upgrade is carried on both a
// declared and a sniffed port; a GRPCRoute's 80/20 weights hold per call on one channel; the
// request metrics appear and promtool accepts them.
//
// Cluster: node-1 demo/client; demo/greeter-1 on node-1, greeter-2..4 on node-2 (gRPC on
// 50051, the Service port named `grpc`; greeter-1,2 track v1, greeter-3,4 track v2, each
// track a Service, and Service greeter-canary split 80/20 over them by a GRPCRoute);
// demo/banner on node-2 (a banner on 2525 and 2222); demo/ws on node-2 (WebSocket echo on 8765).
// Run on the mesh `weft sim` starts and on the rendered install (deploy/weft.yaml).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promtoolCheckMetrics } from '../support/promtool.ts';
import { cannotRun, needsRoot } from '../support/root.ts';
import { MESH_SETUPS, simCluster, uniqueName } from '../support/sim.ts';
import { AccessLog, inPodFast, startInPod, type Pod } from './capture-support.ts';
import { agentLog, agentMetrics } from './mesh-support.ts';

const VIP = { greeter: '198.19.0.40', banner: '198.19.0.41', ws: '198.19.0.42', canary: '198.19.0.43', v1: '198.19.0.44', v2: '198.19.0.45' } as const;
const GREETERS = ['greeter-1', 'greeter-2', 'greeter-3', 'greeter-4'];
const UNARY_CALLS = 200;
const STREAM_MESSAGES = 1000;
const WEIGHTED_CALLS = 500;
/** The pods of each track (Service greeter-v1, greeter-v2). */
const TRACK: Readonly<Record<string, 'v1' | 'v2'>> = { 'greeter-1': 'v1', 'greeter-2': 'v1', 'greeter-3': 'v2', 'greeter-4': 'v2' };

function manifests(): string {
  const pods: [string, string, string][] = [
    ['client', 'node-1', 'client'], ['greeter-1', 'node-1', 'greeter'], ['greeter-2', 'node-2', 'greeter'],
    ['greeter-3', 'node-2', 'greeter'], ['greeter-4', 'node-2', 'greeter'], ['banner', 'node-2', 'banner'], ['ws', 'node-2', 'ws'],
  ];
  return `
apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {weft.dev/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  clusterIP: ${VIP.greeter}
  selector: {app: greeter}
  ports: [{name: grpc, port: 50051, targetPort: 50051}]
${(['v1', 'v2'] as const).map((track) => `---
apiVersion: v1
kind: Service
metadata: {name: greeter-${track}, namespace: demo}
spec:
  clusterIP: ${VIP[track]}
  selector: {app: greeter, track: ${track}}
  ports: [{name: grpc, port: 50051, targetPort: 50051}]
`).join('')}---
apiVersion: v1
kind: Service
metadata: {name: greeter-canary, namespace: demo}
spec:
  clusterIP: ${VIP.canary}
  selector: {app: greeter}
  ports: [{name: grpc, port: 50051, targetPort: 50051}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: greeter-canary, namespace: demo}
spec:
  parentRefs: [{group: '', kind: Service, name: greeter-canary, port: 50051}]
  rules:
  - backendRefs:
    - {name: greeter-v1, port: 50051, weight: 80}
    - {name: greeter-v2, port: 50051, weight: 20}
---
apiVersion: v1
kind: Service
metadata: {name: banner, namespace: demo}
spec:
  clusterIP: ${VIP.banner}
  selector: {app: banner}
  ports:
  - {name: smtp, port: 25, targetPort: 2525}
  - {name: tcp-ssh, port: 22, targetPort: 2222}
  - {name: other, port: 4000, targetPort: 2222}
---
apiVersion: v1
kind: Service
metadata: {name: ws, namespace: demo}
spec:
  clusterIP: ${VIP.ws}
  selector: {app: ws}
  ports:
  - {name: ws, port: 80, targetPort: 8765, appProtocol: kubernetes.io/ws}
  - {name: plain, port: 81, targetPort: 8765}
${pods.map(([name, nodeName, app]) => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: demo, labels: {app: ${app}${TRACK[name] === undefined ? '' : `, track: ${TRACK[name]}`}}}
spec:
  nodeName: ${nodeName}
  containers: [{name: app, image: weft/echo, ports: [{containerPort: 8080}]}]
`).join('')}`;
}

/** A gRPC service without generated code (raw bytes, which grpcio allows): who answered, and a server stream. */
const GRPC_SERVER = `
import grpc, sys
from concurrent import futures
pod = sys.argv[1]
def who(request, context):
    return pod.encode()
def stream(request, context):
    for i in range(int(request.decode())):
        yield (b'%06d:' % i) + b'x' * 200
handler = grpc.method_handlers_generic_handler('weft.Greeter', {
    'Who': grpc.unary_unary_rpc_method_handler(who),
    'Stream': grpc.unary_stream_rpc_method_handler(stream),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port('0.0.0.0:50051')
server.start()
print('listening', flush=True)
server.wait_for_termination(timeout=600)
`;

/** One channel (one HTTP/2 connection): unary calls counted by pod, then one server stream checked message by message. */
const GRPC_CLIENT = `
import grpc, json, sys
target, calls, messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
channel = grpc.insecure_channel(target)
who = channel.unary_unary('/weft.Greeter/Who')
counts = {}
for _ in range(calls):
    name = who(b'', timeout=10).decode()
    counts[name] = counts.get(name, 0) + 1
call = channel.unary_stream('/weft.Greeter/Stream')(str(messages).encode(), timeout=30)
got, in_order, size = 0, True, 0
for m in call:
    in_order = in_order and m.startswith(b'%06d:' % got)
    got += 1
    size += len(m)
print(json.dumps({'counts': counts, 'stream': got, 'in_order': in_order, 'bytes': size, 'code': str(call.code())}))
`;

/** A server-first protocol: a banner the moment a client connects, then whatever it sends is ignored. */
const BANNER_SERVER = `
import socket, threading
def serve(port, banner):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        c.sendall(banner)
        threading.Thread(target=lambda c=c: (c.recv(1024), c.close()), daemon=True).start()
threading.Thread(target=serve, args=(2525, b'220 banner.demo ESMTP weft-test\\r\\n'), daemon=True).start()
threading.Thread(target=serve, args=(2222, b'SSH-2.0-weft-test\\r\\n'), daemon=True).start()
print('listening', flush=True)
threading.Event().wait(600)
`;

/** Connect to each port in turn, time connect -> first banner byte (ms), several times; prints the medians. */
const BANNER_CLIENT = `
import json, socket, statistics, sys, time
host, ports, rounds = sys.argv[1], [int(p) for p in sys.argv[2].split(',')], int(sys.argv[3])
out = {}
for port in ports:
    times = []
    for _ in range(rounds):
        s = socket.create_connection((host, port), timeout=5)
        t0 = time.monotonic()
        data = s.recv(64)
        times.append((time.monotonic() - t0) * 1000)
        assert data, 'no banner on %d' % port
        s.close()
    out[str(port)] = {'median': statistics.median(times), 'banner': data.decode(errors='replace').strip()}
print(json.dumps(out))
`;

const WS_SERVER = `
import asyncio, websockets
async def echo(ws, path=None):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, '0.0.0.0', 8765, max_size=None):
        print('listening', flush=True)
        await asyncio.sleep(600)
asyncio.run(main())
`;

/** 100 text messages and one 1 MiB binary message, each echoed back intact. */
const WS_CLIENT = `
import asyncio, json, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], max_size=None) as ws:
        ok = 0
        for i in range(100):
            await ws.send('message %d' % i)
            ok += (await ws.recv()) == 'message %d' % i
        big = bytes(range(256)) * 4096
        await ws.send(big)
        back = await ws.recv()
        print(json.dumps({'echoed': ok, 'big': back == big}))
asyncio.run(main())
`;

/** A python3 that imports every module (Debian's python3-grpcio, python3-websockets); a pyenv python3 may shadow Debian's. */
function pythonWith(modules: readonly string[]): string | undefined {
  return ['python3', '/usr/bin/python3'].find((py) => spawnSync(py, ['-c', `import ${modules.join(', ')}`]).status === 0);
}

for (const [setup, setupArgs] of MESH_SETUPS) test(`L7 in the node proxy: gRPC balanced per call, a whole server stream, server-first banners, WebSocket, request metrics (${setup})`, { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter', 'promtool'])) return;
  const python = pythonWith(['grpc', 'websockets']);
  if (python === undefined) {
    cannotRun(t, 'needs python3-grpcio and python3-websockets (scripts/bootstrap.sh installs them)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'weft-mesh-l7-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = (file: string, text: string): string => {
    writeFileSync(join(dir, file), text);
    return join(dir, file);
  };
  const files = {
    grpcServer: script('grpc-server.py', GRPC_SERVER), grpcClient: script('grpc-client.py', GRPC_CLIENT),
    bannerServer: script('banner-server.py', BANNER_SERVER), bannerClient: script('banner-client.py', BANNER_CLIENT),
    wsServer: script('ws-server.py', WS_SERVER), wsClient: script('ws-client.py', WS_CLIENT),
  };
  mkdirSync(join(dir, 'manifests'));
  writeFileSync(join(dir, 'manifests', 'cluster.yaml'), manifests());
  const name = uniqueName('l7');
  const s = await simCluster(t, name, ['--nodes', '2', '--manifests', join(dir, 'manifests'), ...setupArgs]);
  const pod = (n: string): Pod => s.pods.find((p) => p.name === n) ?? assert.fail(`pod ${n}`);
  const client = pod('client');
  const servers = [
    ...GREETERS.map((g) => startInPod(pod(g), [python, files.grpcServer, g])),
    startInPod(pod('banner'), [python, files.bannerServer]),
    startInPod(pod('ws'), [python, files.wsServer]),
  ];
  t.after(async () => { await Promise.all(servers.map((x) => x.stop())); });
  await Promise.all(servers.map((x) => x.waitLine(/^listening$/, 30_000)));
  const log1 = new AccessLog(agentLog(name, 'node-1'));
  const log2 = new AccessLog(agentLog(name, 'node-2'));

  await t.test(`one gRPC channel: ${UNARY_CALLS} unary calls reach all 4 pods across nodes; a ${STREAM_MESSAGES}-message server stream arrives whole`, async () => {
    const r = await inPodFast(client, [python, files.grpcClient, `${VIP.greeter}:50051`, String(UNARY_CALLS), String(STREAM_MESSAGES)], 90_000);
    assert.equal(r.status, 0, `grpc client: ${r.stdout}\n${r.stderr.slice(-3000)}`);
    const out = JSON.parse(r.stdout) as { counts: Record<string, number>; stream: number; in_order: boolean; bytes: number; code: string };
    t.diagnostic(`unary calls per pod: ${JSON.stringify(out.counts)}`);
    assert.deepEqual(Object.keys(out.counts).sort(), GREETERS, 'every pod answered calls on the one channel');
    assert.equal(Object.values(out.counts).reduce((a, b) => a + b, 0), UNARY_CALLS);
    // Not an even split: peak-EWMA favours the pod on the client's node, and an endpoint whose
    // first call was slow (its first pooled connection, a cold server) stays costly for the
    // 10 s decay, longer than these calls take (as in Linkerd).
    assert.deepEqual([out.stream, out.in_order, out.bytes, out.code], [STREAM_MESSAGES, true, STREAM_MESSAGES * 207, 'StatusCode.OK']);
    // Each call is a request at the source agent, with its gRPC status from the trailers.
    const grpcLines = (await log1.settle(UNARY_CALLS + 1, 10_000)).filter((l) => (l as { path?: string }).path?.startsWith('/weft.Greeter/') === true);
    assert.ok(grpcLines.length >= UNARY_CALLS + 1, `source request lines: ${grpcLines.length}`);
    assert.ok(grpcLines.every((l) => (l as { grpc_status?: string }).grpc_status === '0'), 'grpc_status 0 on every call');
  });

  await t.test(`MeshGRPCRouteWeight: 80/20 across two Services within +-5% over ${WEIGHTED_CALLS} calls on one channel`, async () => {
    const log = new AccessLog(agentLog(name, 'node-1'));
    log.mark();
    // The same client as above, with a 1-message stream after the unary calls.
    const r = await inPodFast(client, [python, files.grpcClient, `${VIP.canary}:50051`, String(WEIGHTED_CALLS), '1'], 120_000);
    assert.equal(r.status, 0, `grpc client: ${r.stdout}\n${r.stderr.slice(-3000)}`);
    const { counts } = JSON.parse(r.stdout) as { counts: Record<string, number> };
    const byTrack = { v1: 0, v2: 0 };
    for (const [who, n] of Object.entries(counts)) {
      const track = TRACK[who] ?? assert.fail(`a call answered by ${who}, not a greeter`);
      byTrack[track] += n;
    }
    t.diagnostic(`calls per pod: ${JSON.stringify(counts)}; v1 ${byTrack.v1}, v2 ${byTrack.v2}`);
    assert.equal(byTrack.v1 + byTrack.v2, WEIGHTED_CALLS);
    assert.ok(Math.abs(byTrack.v1 / WEIGHTED_CALLS - 0.8) <= 0.05, `v1 share ${byTrack.v1 / WEIGHTED_CALLS}`);
    // Per call, not per connection: the one channel reached both tracks.
    assert.ok(byTrack.v2 > 0);
    // The source agent names the route on each call.
    const routed = (await log.settle(WEIGHTED_CALLS, 10_000)).filter((l) => (l as { route?: string }).route === 'demo/greeter-canary');
    assert.ok(routed.length >= WEIGHTED_CALLS, `request lines naming the GRPCRoute: ${routed.length}`);
  });

  await t.test('a server-first banner (port 25) comes as fast as on a port declared tcp-; an undeclared port waits at most the sniff bound', async () => {
    const r = await inPodFast(client, [python, files.bannerClient, VIP.banner, '25,22,4000', '9'], 60_000);
    assert.equal(r.status, 0, `banner client: ${r.stdout}\n${r.stderr.slice(-2000)}`);
    const out = JSON.parse(r.stdout) as Record<string, { median: number; banner: string }>;
    const [smtp, ssh, other] = [out['25'], out['22'], out['4000']].map((x) => x ?? assert.fail(`banners: ${r.stdout}`));
    t.diagnostic(`median ms to the banner: port 25 ${smtp.median.toFixed(1)}, tcp-ssh ${ssh.median.toFixed(1)}, undeclared ${other.median.toFixed(1)}`);
    assert.match(smtp.banner, /^220 banner\.demo ESMTP/);
    assert.match(ssh.banner, /^SSH-2\.0-weft-test/);
    assert.ok(smtp.median <= ssh.median + 20, `port 25 banner after ${smtp.median} ms vs ${ssh.median} ms on tcp-ssh: no added delay`);
    assert.ok(other.median < 100 + 60, `an undeclared port's banner waits at most the 100 ms sniff (${other.median} ms)`);
  });

  await t.test('WebSocket: the upgrade is carried on a kubernetes.io/ws port and on a sniffed one, messages both ways after it', async () => {
    for (const port of [80, 81]) {
      const r = await inPodFast(client, [python, files.wsClient, `ws://${VIP.ws}:${port}/chat`], 30_000);
      assert.equal(r.status, 0, `ws client on ${port}: ${r.stdout}\n${r.stderr.slice(-2000)}`);
      assert.deepEqual(JSON.parse(r.stdout), { echoed: 100, big: true }, `port ${port}`);
    }
    // The HTTP layer saw the handshakes (101 at the source agent), not an opaque splice.
    const upgrades = (await log1.settle(2, 10_000)).filter((l) => (l as { path?: string; status?: number }).path === '/chat');
    assert.deepEqual(upgrades.map((l) => (l as { status?: number }).status), [101, 101]);
  });

  await t.test('istio_requests_total and the duration histogram at both reporters; promtool accepts /metrics', async () => {
    await log2.settle(1, 5000);
    for (const [node, reporter] of [['node-1', 'source'], ['node-2', 'destination']] as const) {
      const text = await agentMetrics(s, node);
      assert.match(text, new RegExp(`^istio_requests_total\\{reporter="${reporter}".*request_protocol="grpc".*grpc_response_status="0"`, 'm'), `${node}: gRPC requests`);
      assert.match(text, /^istio_request_duration_milliseconds_bucket\{/m, `${node}: the duration histogram`);
      assert.match(text, /^istio_request_bytes_bucket\{/m);
      assert.match(text, /^istio_response_bytes_bucket\{/m);
      const verdict = promtoolCheckMetrics(text);
      assert.ok(verdict.ok, `promtool on ${node}'s metrics:\n${verdict.output}`);
    }
  });
});
