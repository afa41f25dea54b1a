// The set-up the L7 policy tests share (mesh-retry, mesh-fault-injection, mesh-circuit-breaking,
// mesh-rate-limit, mesh-l7-authorization): manifest fragments for the enrolled `demo` namespace
// and its pods, the test's scripts written to a temporary directory, a 2-node simulated mesh
// from those manifests, and server scripts started in pods and waited for; plus the client
// scripts more than one of them runs (a paced keep-alive load, a repeated gRPC call).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { simCluster, uniqueName, type SimStatus } from '../support/sim.ts';
import { startInPod, type Pod } from './capture-support.ts';

/** The enrolled namespace every scene's objects live in. */
export const DEMO_NAMESPACE = `apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {weft.dev/mesh: enabled}}
`;

/** A pod in `demo` on `node`, labelled app: `app`; a serving pod declares a container port. */
export function podYaml(name: string, node: string, opts: { app?: string; serves?: boolean } = {}): string {
  const ports = opts.serves === false ? '' : ', ports: [{containerPort: 8080}]';
  return `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: demo, labels: {app: ${opts.app ?? name}}}
spec:
  nodeName: ${node}
  containers: [{name: app, image: weft/echo${ports}}]
`;
}

/** Ports of a scene's Services: HTTP 80 -> 9080, gRPC 50051, opaque TCP 90 -> 9090. */
export const PORTS = {
  http: '{name: http, port: 80, targetPort: 9080}',
  grpc: '{name: grpc, port: 50051, targetPort: 50051}',
  tcp: '{name: tcp, port: 90, targetPort: 9090}',
} as const;

/** A Service in `demo` at `vip` over the pods labelled app: `app`, with one of PORTS. */
export const serviceYaml = (name: string, vip: string, app: string, port: string): string => `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: demo}
spec:
  clusterIP: ${vip}
  selector: {app: ${app}}
  ports: [${port}]
`;

/** A DestinationPolicy on the Service `name`; `trafficPolicy`: its YAML lines, indented four spaces. */
export const destinationPolicyYaml = (name: string, trafficPolicy: string): string => `---
apiVersion: weft.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: ${name}, namespace: demo}
spec:
  targetRef: {kind: Service, name: ${name}}
  trafficPolicy:
${trafficPolicy}
`;

/**
 * Python, the end of a grpcio server script: serves the unary `demo.Api` methods (name ->
 * the script's handler function) on 50051 and prints "listening" once it does.
 */
export const grpcServe = (methods: Readonly<Record<string, string>>): string => `h = grpc.method_handlers_generic_handler('demo.Api', {
${Object.entries(methods).map(([m, f]) => `    '${m}': grpc.unary_unary_rpc_method_handler(${f}),`).join('\n')}
})
server = grpc.server(futures.ThreadPoolExecutor(8))
server.add_generic_rpc_handlers((h,))
server.add_insecure_port('0.0.0.0:50051')
server.start()
print('listening', flush=True)
server.wait_for_termination()
`;

/** The usual cast: demo/client on node-1 calling one server pod on node-2. */
export const clientAndServer = (server: string, app = server): string =>
  podYaml('client', 'node-1', { serves: false }) + podYaml(server, 'node-2', { app });

export interface L7Scene {
  readonly name: string;
  readonly status: SimStatus;
  readonly dir: string;
  pod(name: string): Pod;
  /** The path of one of the scene's scripts. */
  script(file: string): string;
  /** Starts `command` (with the script path substituted for its file name) in each pod, waits for "listening", stops it after the test. */
  serve(t: TestContext, pods: readonly string[], command: (pod: string) => readonly string[]): Promise<void>;
}

/**
 * Writes `scripts` and `manifests` to a fresh temporary directory and brings up a 2-node mesh
 * from them; everything is removed after the test.
 */
export async function l7Scene(t: TestContext, prefix: string, manifests: string, scripts: Readonly<Record<string, string>>): Promise<L7Scene> {
  const dir = mkdtempSync(join(tmpdir(), `weft-${prefix}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [file, text] of Object.entries(scripts)) writeFileSync(join(dir, file), text);
  mkdirSync(join(dir, 'manifests'));
  writeFileSync(join(dir, 'manifests', 'cluster.yaml'), manifests);
  const name = uniqueName(prefix);
  const status = await simCluster(t, name, ['--nodes', '2', '--manifests', join(dir, 'manifests')]);
  const pod = (n: string): Pod => status.pods.find((p) => p.name === n) ?? assert.fail(`pod ${n}`);
  return {
    name,
    status,
    dir,
    pod,
    script: (file) => join(dir, file),
    async serve(tc, pods, command) {
      const servers = pods.map((p) => startInPod(pod(p), command(p)));
      tc.after(async () => { await Promise.all(servers.map((x) => x.stop())); });
      await Promise.all(servers.map((x) => x.waitLine(/^listening$/, 30_000)));
    },
  };
}

/**
 * `load.py HOST PATH RATE SECONDS`: five keep-alive connections, each paced at rate/5 on its own
 * absolute schedule, none sent after the window; prints {"counts": {status: n}, "retry_after":
 * [distinct retry-after values of the 429s], "elapsed": s}.
 */
export const PACED_LOAD = `
import http.client, json, sys, threading, time
host, path, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
lanes = 5
counts, retry_after, lock = {}, set(), threading.Lock()
start = time.monotonic() + 0.2
def lane(k):
    c = http.client.HTTPConnection(host, 80, timeout=10)
    i = 0
    while True:
        at = start + (i * lanes + k) / rate
        if at >= start + seconds: break
        time.sleep(max(0, at - time.monotonic()))
        c.request('GET', path)
        r = c.getresponse()
        r.read()
        with lock:
            counts[r.status] = counts.get(r.status, 0) + 1
            if r.status == 429: retry_after.add(r.getheader('retry-after'))
        i += 1
ts = [threading.Thread(target=lane, args=(k,)) for k in range(lanes)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({'counts': counts, 'retry_after': sorted(x or '' for x in retry_after), 'elapsed': time.monotonic() - start}))
`;

/** `grpc-repeat.py TARGET METHOD N`: N unary calls on one channel; prints their status codes as a JSON list. */
export const GRPC_REPEAT = `
import grpc, json, sys
channel = grpc.insecure_channel(sys.argv[1])
codes = []
for _ in range(int(sys.argv[3])):
    try:
        channel.unary_unary(sys.argv[2])(b'', timeout=10)
        codes.append('OK')
    except grpc.RpcError as e:
        codes.append(e.code().name)
print(json.dumps(codes))
`;
