// L7 AuthorizationPolicy end to end on a 2-node simulated mesh, with real clients (curl, and
// Debian's python3-grpcio) and servers in the pods: `GET /public` allowed, `POST /admin`
// denied with 403 `RBAC: access denied`, a path no rule allows denied, and for gRPC (method
// names as paths) `/demo.Public/Get` allowed, `/demo.Admin/Drop` PERMISSION_DENIED. Once for
// a pod on the client's node (the source agent holds its policy and checks each request) and
// once for a pod on the other node, whose policy only that node's agent holds: the
// destination agent checks each tunnelled request. Denials are in the access log (flag DENY)
// and in istio_requests_total.
//
// Cluster: node-1 demo/client and demo/near (app: near); node-2 demo/far (app: far). Each
// server pod answers HTTP on 9080 and gRPC on 50051.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRoot } from '../support/root.ts';
import { AccessLog, needsGrpcPython, inPodFast, type Pod } from './capture-support.ts';
import { DEMO_NAMESPACE, l7Scene, podYaml } from './l7-scene.ts';
import { agentLog, agentMetrics } from './mesh-support.ts';

const VIP = { near: '198.19.0.60', far: '198.19.0.61' } as const;

function manifests(): string {
  const service = (app: string, vip: string): string => `---
apiVersion: v1
kind: Service
metadata: {name: ${app}, namespace: demo}
spec:
  clusterIP: ${vip}
  selector: {app: ${app}}
  ports: [{name: http, port: 80, targetPort: 9080}, {name: grpc, port: 50051, targetPort: 50051}]
`;
  // One ALLOW and one DENY policy per app, so each lands only on the node of its pod.
  const policies = (app: string): string => `---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: ${app}-allow, namespace: demo}
spec:
  selector: {matchLabels: {app: ${app}}}
  rules:
  - to: [{operation: {ports: [9080], methods: [GET, HEAD], paths: [/public, /public/*]}}]
  - to: [{operation: {ports: [9080], methods: [POST], paths: [/admin]}}]
  - to: [{operation: {ports: [50051], paths: [/demo.Public/*, /demo.Admin/*]}}]
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: ${app}-deny-admin, namespace: demo}
spec:
  selector: {matchLabels: {app: ${app}}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin*, /demo.Admin/*]}}]
`;
  return `${DEMO_NAMESPACE}${service('near', VIP.near)}${service('far', VIP.far)}${policies('near')}${policies('far')}${podYaml('client', 'node-1')}${podYaml('near', 'node-1')}${podYaml('far', 'node-2')}`;
}

/** HTTP on 9080 (any method: "<pod> <METHOD> <path>") and gRPC on 50051 (demo.Public/Get, demo.Admin/Drop). */
const SERVER = `
import grpc, sys, threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
pod = sys.argv[1]
class H(BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get('content-length') or 0)
        if n: self.rfile.read(n)
        body = ('%s %s %s' % (pod, self.command, self.path)).encode()
        self.send_response(200)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = answer
    def log_message(self, *a): pass
http = ThreadingHTTPServer(('0.0.0.0', 9080), H)
threading.Thread(target=http.serve_forever, daemon=True).start()
ok = lambda request, context: pod.encode()
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((
    grpc.method_handlers_generic_handler('demo.Public', {'Get': grpc.unary_unary_rpc_method_handler(ok)}),
    grpc.method_handlers_generic_handler('demo.Admin', {'Drop': grpc.unary_unary_rpc_method_handler(ok)}),
))
server.add_insecure_port('0.0.0.0:50051')
server.start()
print('listening', flush=True)
server.wait_for_termination(timeout=600)
`;

/** Each method called once: its status code and, when OK, the answer. */
const GRPC_CLIENT = `
import grpc, json, sys
channel = grpc.insecure_channel(sys.argv[1])
out = {}
for m in sys.argv[2:]:
    try:
        out[m] = {'code': 'OK', 'answer': channel.unary_unary(m)(b'', timeout=10).decode()}
    except grpc.RpcError as e:
        out[m] = {'code': e.code().name, 'details': e.details()}
print(json.dumps(out))
`;

interface Answer { readonly status: number; readonly body: string }

async function http(client: Pod, method: string, url: string): Promise<Answer> {
  const r = await inPodFast(client, ['curl', '-sS', '-m', '10', '-X', method, '-w', '\n%{http_code}', url]);
  assert.equal(r.status, 0, `curl ${method} ${url}: ${r.stderr}`);
  const lines = r.stdout.split('\n');
  const status = Number(lines.pop());
  return { status, body: lines.join('\n') };
}

test('L7 AuthorizationPolicy: GET /public allowed, POST /admin 403, gRPC Admin PERMISSION_DENIED, at the source and the destination agent', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['nsenter', 'curl'])) return;
  const python = needsGrpcPython(t);
  if (python === undefined) return;
  const scene = await l7Scene(t, 'authz', manifests(), { 'server.py': SERVER, 'grpc-client.py': GRPC_CLIENT });
  const client = scene.pod('client');
  await scene.serve(t, ['near', 'far'], (n) => [python, scene.script('server.py'), n]);
  const logs = { near: new AccessLog(agentLog(scene.name, 'node-1')), far: new AccessLog(agentLog(scene.name, 'node-2')) };

  for (const [app, where] of [['near', 'the source agent (same node)'], ['far', 'the destination agent (other node)']] as const) {
    await t.test(`HTTP/1.1 (curl) to ${app}: enforced by ${where}`, async () => {
      logs[app].mark();
      const vip = VIP[app];
      assert.deepEqual(await http(client, 'GET', `http://${vip}/public`), { status: 200, body: `${app} GET /public` });
      assert.deepEqual(await http(client, 'GET', `http://${vip}/public/page?x=1`), { status: 200, body: `${app} GET /public/page?x=1` });
      assert.deepEqual(await http(client, 'POST', `http://${vip}/admin`), { status: 403, body: 'RBAC: access denied' });
      assert.deepEqual(await http(client, 'GET', `http://${vip}/public/../admin`), { status: 403, body: 'RBAC: access denied' }, 'normalised before matching');
      assert.deepEqual(await http(client, 'DELETE', `http://${vip}/public`), { status: 403, body: 'RBAC: access denied' }, 'no ALLOW rule matches');
      // The deciding agent logs each denial with the flag DENY.
      const denied = (await logs[app].settle(5, 10_000)).filter((l) => (l as { status?: number }).status === 403);
      assert.ok(denied.length >= 3, `denials in ${app}'s agent log: ${JSON.stringify(denied)}`);
      assert.ok(denied.every((l) => (l as { flags?: string }).flags === 'DENY'), JSON.stringify(denied));
      if (app === 'far') assert.ok(denied.every((l) => (l as { reporter?: string }).reporter === 'destination'), 'decided at the destination agent');
    });

    await t.test(`gRPC (grpcio) to ${app}: method names as paths, enforced by ${where}`, async () => {
      const r = await inPodFast(client, [python, scene.script('grpc-client.py'), `${VIP[app]}:50051`, '/demo.Public/Get', '/demo.Admin/Drop'], 60_000);
      assert.equal(r.status, 0, `grpc client: ${r.stdout}\n${r.stderr.slice(-2000)}`);
      assert.deepEqual(JSON.parse(r.stdout), {
        '/demo.Public/Get': { code: 'OK', answer: app },
        '/demo.Admin/Drop': { code: 'PERMISSION_DENIED', details: 'RBAC: access denied' },
      });
    });
  }

  await t.test('denials are counted: istio_requests_total with response_code 403 at the destination reporter on node-2', async () => {
    const text = await agentMetrics(scene.status, 'node-2');
    assert.match(text, /^istio_requests_total\{reporter="destination"[^}]*response_code="403"[^}]*\} [1-9]/m);
  });
});
