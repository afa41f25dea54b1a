// Dual-stack clients in the simulated mesh (issue 9, point 0), in both capture modes: a real
// gRPC client (Debian's python3-grpcio, which dials IPv4 addresses from an AF_INET6 socket as
// ::ffff:a.b.c.d) reaches a Service VIP on another node over mTLS, and so does a plain
// AF_INET6 socket; a pod with an IPv6 address is refused at enrolment, loudly, not
// half-captured.
//
// Cluster (2 nodes): node-1 demo/client, demo/dual (declares an IPv6 address too);
// node-2 demo/greeter (gRPC server on 50051 behind Service greeter), demo/hello (Service hello).

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { simCluster, uniqueName } from '../support/sim.ts';
import { AccessLog, configDump, curl, escape, needsGrpcPython, inPodFast, startInPod, type Pod } from './capture-support.ts';
import { agentLog, node } from './mesh-support.ts';

const GREETER_VIP = '198.19.0.20';
const HELLO_VIP = '198.19.0.11';
const DUAL_IPV6 = 'fd00:198:18::30';

const MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {weft.dev/mesh: enabled}}
${['client', 'greeter', 'hello'].map((sa) => `---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ${sa}, namespace: demo}
`).join('')}---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  clusterIP: ${GREETER_VIP}
  selector: {app: greeter}
  ports: [{name: grpc, port: 50051, targetPort: 50051, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: demo}
spec:
  clusterIP: ${HELLO_VIP}
  selector: {app: hello}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
${[
  ['client', 'node-1', 'client', 'client'],
  ['dual', 'node-1', 'client', 'dual'],
  ['greeter', 'node-2', 'greeter', 'greeter'],
  ['hello', 'node-2', 'hello', 'hello'],
].map(([name, nodeName, sa, app]) => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: demo, labels: {app: ${app}}}
spec:
  nodeName: ${nodeName}
  serviceAccountName: ${sa}
  containers: [{name: app, image: weft/echo, ports: [{containerPort: 8080}]}]
${name === 'dual' ? `status: {podIPs: [{ip: "${DUAL_IPV6}"}]}\n` : ''}`).join('')}`;

/** A gRPC service without generated code: raw bytes in and out, which grpcio allows. */
const GRPC_SERVER = `
import grpc, sys
from concurrent import futures
def say(request, context):
    return ('hello from %s peer=%s' % (sys.argv[1], context.peer())).encode()
handler = grpc.method_handlers_generic_handler('weft.Echo', {'Say': grpc.unary_unary_rpc_method_handler(say)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port('0.0.0.0:50051')
server.start()
print('listening', flush=True)
server.wait_for_termination(timeout=300)
`;

const GRPC_CLIENT = `
import grpc, sys
channel = grpc.insecure_channel(sys.argv[1])
print(channel.unary_unary('/weft.Echo/Say')(b'hi', timeout=10).decode())
`;

/** A plain dual-stack socket, as a Java or Go client with default settings opens one. */
const MAPPED_CLIENT = `
import json, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.settimeout(8)
s.connect(('::ffff:' + sys.argv[1], int(sys.argv[2])))
peer = s.getpeername()
s.sendall(b'GET / HTTP/1.0\\r\\nHost: hello\\r\\n\\r\\n')
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(json.dumps({'peer': '%s:%d' % (peer[0], peer[1]), 'body': data.split(b'\\r\\n\\r\\n', 1)[-1].decode()}))
`;

for (const mode of ['ebpf', 'iptables'] as const) {
  test(`dual-stack clients are captured like IPv4 ones (--mesh ${mode})`, { timeout: 240_000 }, async (t) => {
    if (!needsRoot(t, ['curl', 'nsenter', 'strace'])) return;
    const python = needsGrpcPython(t);
    if (python === undefined) return;
    await dualStackSuite(t, mode, python);
  });
}

async function dualStackSuite(t: TestContext, mode: 'ebpf' | 'iptables', python: string): Promise<void> {
  // Scripts in one directory, the manifest alone in another (the simulator reads every file there).
  const dir = mkdtempSync(join(tmpdir(), 'weft-dual-stack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = { server: join(dir, 'grpc-server.py'), client: join(dir, 'grpc-client.py'), mapped: join(dir, 'mapped-client.py') };
  writeFileSync(files.server, GRPC_SERVER);
  writeFileSync(files.client, GRPC_CLIENT);
  writeFileSync(files.mapped, MAPPED_CLIENT);
  const manifests = join(dir, 'manifests');
  mkdirSync(manifests);
  writeFileSync(join(manifests, 'cluster.yaml'), MANIFESTS);
  const name = uniqueName(mode === 'ebpf' ? 'de' : 'di');
  const s = await simCluster(t, name, ['--nodes', '2', '--manifests', manifests, '--mesh', mode]);
  const pod = (n: string): Pod => s.pods.find((p) => p.name === n) ?? assert.fail(`pod ${n}`);
  const client = pod('client');
  const dual = pod('dual');
  const node1 = node(s, 'node-1');
  const node2 = node(s, 'node-2');
  const log1 = new AccessLog(agentLog(name, 'node-1'));
  const log2 = new AccessLog(agentLog(name, 'node-2'));

  const server = startInPod(pod('greeter'), [python, files.server, 'greeter']);
  t.after(() => server.stop());
  await server.waitLine(/^listening$/, 30_000);

  await t.test('a python3-grpcio client (default dual-stack socket) reaches a Service VIP on another node over mTLS', async () => {
    log1.mark();
    log2.mark();
    // strace shows which socket gRPC used: the point is that it is AF_INET6 with a v4-mapped address.
    const r = await inPodFast(client, ['strace', '-f', '-qq', '-e', 'trace=connect', python, files.client, `${GREETER_VIP}:50051`], 30_000);
    assert.equal(r.status, 0, `grpc client: ${r.stdout}\n${r.stderr.slice(-3000)}`);
    assert.match(r.stderr, new RegExp(`connect\\(\\d+, \\{sa_family=AF_INET6, sin6_port=htons\\(50051\\),.*"::ffff:${escape(GREETER_VIP)}"`), 'grpcio dialled ::ffff:VIP from an AF_INET6 socket');
    assert.match(r.stdout, new RegExp(`^hello from greeter peer=ipv4:${escape(node2.bridgeIp)}:\\d+\\n$`), 'the server sees node-2\'s agent: the call was captured and tunnelled');
    const [src] = await log1.settle(1);
    assert.ok(src, 'node-1 recorded the connection');
    assert.equal(src.reporter, 'source');
    assert.equal(src.src.workload, 'client');
    assert.equal(src.service, 'greeter.demo.svc.cluster.local');
    assert.equal(src.dst.workload, 'greeter');
    assert.equal(src.security, 'mutual_tls');
    assert.equal(src.flags, '-');
    const [dst] = await log2.settle(1);
    assert.equal(dst?.reporter, 'destination');
    assert.equal(dst.src.identity, 'spiffe://cluster.local/ns/demo/sa/client');
    assert.equal(dst.security, 'mutual_tls');
  });

  await t.test('a plain AF_INET6 socket dialling ::ffff:<VIP> is captured, and getpeername shows what it dialled', async () => {
    log1.mark();
    const r = await inPodFast(client, [python, files.mapped, HELLO_VIP, '80'], 20_000);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { peer: string; body: string };
    assert.equal(out.peer, `::ffff:${HELLO_VIP}:80`);
    assert.match(out.body, new RegExp(`^hello from hello ns=demo node=node-2 client=${escape(node2.bridgeIp)}:\\d+\\n$`));
    const [rec] = await log1.settle(1);
    assert.equal(rec?.service, 'hello.demo.svc.cluster.local');
    assert.equal(rec.security, 'mutual_tls');
  });

  await t.test('a pod with an IPv6 address is refused at enrolment, loudly, and not captured at all', async () => {
    const dump = await configDump(node1.netns);
    assert.deepEqual(dump.capture.enrolled, ['demo/client'], 'demo/dual is not captured');
    const refused = dump.capture.refused ?? [];
    assert.deepEqual(refused.map((x) => x.pod), ['demo/dual']);
    assert.match(refused[0]?.reason ?? '', new RegExp(`IPv6 address\\(es\\) ${escape(DUAL_IPV6)}: weft captures IPv4 only`));
    const errorLine = readFileSync(agentLog(name, 'node-1'), 'utf8').split('\n').find((l) => l.includes('WEFT_REDIRECT_IPV6_UNSUPPORTED'));
    assert.ok(errorLine !== undefined, 'the refusal is in the agent log with its code');
    assert.equal((JSON.parse(errorLine) as { level: number }).level, 50, 'at error level');
    log1.mark();
    const direct = await curl(dual, `http://${pod('hello').ip}:8080/`);
    assert.equal(direct.status, 0, direct.stderr);
    const vip = await curl(dual, `http://${HELLO_VIP}/`, 3);
    assert.notEqual(vip.status, 0, 'its VIP connection is not captured, so it routes nowhere');
    assert.deepEqual(await log1.settle(0), [], 'node-1\'s agent saw none of its connections: nothing of it is half in the mesh');
  });
}
