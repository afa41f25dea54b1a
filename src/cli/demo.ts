// `weft demo` (what `npm start` runs): a simulated cluster with sample services and a
// client in a pod calling them, with a live summary, torn down on Ctrl-C or after
// --duration seconds. The mesh is the rendered install (deploy/weft.yaml, the Helm chart's
// output) run as a cluster runs it, so what a newcomer sees is what a cluster gets.

import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../core/exec.ts';
import { down, podPlacement, up } from '../sim/cluster.ts';
import { runInside } from '../sim/processes.ts';
import { readState, type ClusterState, type MeshMode } from '../sim/state.ts';
import { intFlag, oneOf, parseFlags } from './args.ts';
import { join, relative } from 'node:path';
import { readManifests } from '../config/manifest-files.ts';
import { SimErrors } from '../sim/errors.ts';
import { stringify } from 'yaml';
import { defaultManifests, SAMPLE_NAMESPACE } from '../sim/defaults.ts';
import type { ManifestFile } from '../model/manifests.ts';
import { openViews, traceRelayPlan } from './demo-views.ts';

const USAGE = `weft demo [--name NAME] [--nodes N] [--duration SECONDS] [--install FILE|DIR] [--mesh off|auto|ebpf|iptables]
  --install  the rendered install to run the mesh from (default: deploy/weft.yaml, the chart's output)
  --mesh     the agents' capture mode instead of the install's own (off: no mesh, plain pods)`;

/** The committed rendering of deploy/helm/weft. */
const RENDERED_INSTALL = join(import.meta.dirname, '..', '..', 'deploy', 'weft.yaml');

/** The demo's Gateway API route: calls to demo/hello go 80% to hello's pods, 20% to echo's (a canary split). */
const CANARY_ROUTE: ManifestFile = {
  path: 'canary-route.yaml',
  text: stringify({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'hello-canary', namespace: SAMPLE_NAMESPACE },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'hello', port: 80 }],
      rules: [{ backendRefs: [{ name: 'hello', port: 80, weight: 80 }, { name: 'echo', port: 80, weight: 20 }] }],
    },
  }),
};
const CANARY_CALLS = 50;

/** CANARY_CALLS requests to demo/hello on one connection: how many each app answered. */
async function canarySummary(state: ClusterState, fromPod: string, vip: string): Promise<string> {
  const pod = state.plan.pods.find((p) => p.name === fromPod);
  if (pod === undefined) return '';
  let text = '';
  const urls = Array.from({ length: CANARY_CALLS }, () => `http://${vip}/`);
  const { child, done } = runInside(podPlacement(state, pod), ['curl', '-s', '-m', '5', ...urls], ['ignore', 'pipe', 'ignore']);
  child.stdout?.on('data', (b: Buffer) => { text += b.toString(); });
  await done;
  const hello = [...text.matchAll(/hello from hello-/g)].length;
  const echo = [...text.matchAll(/hello from echo-/g)].length;
  return `  -- route ${SAMPLE_NAMESPACE}/hello-canary (HTTPRoute, 80/20): of ${CANARY_CALLS} calls to ${vip} on one connection, ${hello} reached hello, ${echo} echo`;
}

async function curl(state: ClusterState, fromPod: string, url: string): Promise<string> {
  const pod = state.plan.pods.find((p) => p.name === fromPod);
  if (pod === undefined) return 'no such pod';
  let out = '';
  const { child, done } = runInside(podPlacement(state, pod), ['curl', '-s', '-m', '2', url], ['ignore', 'pipe', 'ignore']);
  child.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
  const code = await done;
  return code === 0 ? out.trim() : `curl exit ${code}`;
}

/** Per reporter of a node's Istio series: the total, and how much of it was over mutual TLS. */
interface Tally {
  all: number;
  mtls: number;
}

function tally(t: Tally, line: string, value: number): void {
  t.all += value;
  if (line.includes('connection_security_policy="mutual_tls"')) t.mtls += value;
}

/**
 * One line per node from its agent's Istio metrics: HTTP requests it sent for its pods
 * (reporter source) and served to them (reporter destination), how many of each went over
 * mutual TLS, and opaque TCP connections (HTTP ones are counted as requests, not here).
 */
async function meshSummary(state: ClusterState, tracing: boolean): Promise<string> {
  const lines: string[] = [];
  for (const n of state.plan.nodes) {
    const { stdout } = await run('nsenter', [`--net=/run/netns/${n.netns}`, 'curl', '-s', '-m', '2', `http://${n.bridgeIp}:15020/metrics`], { okStatus: [0, 7, 28] });
    const sent: Tally = { all: 0, mtls: 0 };
    const served: Tally = { all: 0, mtls: 0 };
    const tcp: Tally = { all: 0, mtls: 0 };
    let bytes = 0;
    let spans = 0;
    let failedSpans = 0;
    for (const line of stdout.split('\n')) {
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      const source = line.includes('reporter="source"');
      if (line.startsWith('istio_requests_total{')) tally(source ? sent : served, line, value);
      else if (line.startsWith('istio_tcp_connections_opened_total{') && source) tally(tcp, line, value);
      else if (/^istio_tcp_(sent|received)_bytes_total\{/.test(line) && source) bytes += value;
      else if (line.startsWith('weft_trace_spans_exported_total')) spans += value;
      else if (line.startsWith('weft_trace_export_failures_total')) failedSpans += value;
    }
    const traced = tracing ? `, ${spans} spans exported${failedSpans > 0 ? ` (${failedSpans} failed)` : ''}` : '';
    const opaque = tcp.all > 0 ? `, ${tcp.all} TCP connections out (${tcp.mtls} mTLS, ${bytes} bytes)` : '';
    lines.push(`${n.name}: ${sent.all} requests sent (${sent.mtls} mTLS), ${served.all} served (${served.mtls} mTLS)${opaque}${traced}`);
  }
  return `  -- mesh: ${lines.join('; ')}`;
}

export async function demoCommand(argv: readonly string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    name: { type: 'string' }, nodes: { type: 'string' }, duration: { type: 'string' }, mesh: { type: 'string' }, install: { type: 'string' },
  }, USAGE);
  const name = values.name ?? 'demo';
  const nodes = intFlag(values.nodes, '--nodes', 2, USAGE);
  const duration = intFlag(values.duration, '--duration', 0, USAGE);
  // The install's own --mode (the chart's: auto) stands unless --mesh names one.
  const mesh: MeshMode = oneOf(values.mesh, '--mesh', ['off', 'auto', 'ebpf', 'iptables'] as const, 'auto', USAGE);
  const source = values.install ?? RENDERED_INSTALL;
  const install = mesh === 'off' ? undefined : { source, files: readManifests(source, SimErrors.BAD_MANIFEST), overrideMode: values.mesh !== undefined };
  const shownSource = relative(process.cwd(), source).startsWith('..') ? source : relative(process.cwd(), source);
  const out = (line: string) => process.stdout.write(`${line}\n`);

  // Traces go to the user's collector on loopback through a relay (the agents cannot reach it).
  const relay = mesh === 'off' ? undefined : traceRelayPlan(process.env);
  if (typeof relay === 'string') out(`  traces: not relayed: ${relay}`);
  else if (relay !== undefined) Object.assign(process.env, relay.env);

  // Ctrl-C from the first moment: during `up` it lets `up` finish (or fail and clean up after
  // itself), then tears down, so an early Ctrl-C leaves nothing behind either.
  let stopping = false;
  const stop = () => { stopping = true; };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // The demo owns its cluster name: a run that crashed before is cleaned up first.
  await down(name);
  const state = await up({ name, nodes, podsPerNode: 3, manifests: [...defaultManifests(nodes, 3), CANARY_ROUTE], mesh, install, log: (l) => out(`  ${l}`) });
  const tracePlan = typeof relay === 'string' ? undefined : relay;
  const views = mesh === 'off' ? undefined : await openViews(state, tracePlan).catch(async (err: unknown) => {
    await down(name);
    throw err;
  });
  try {
    const samplePods = state.plan.pods.filter((p) => p.namespace === SAMPLE_NAMESPACE);
    const client = samplePods[0];
    const targets = samplePods.filter((p) => p.node !== client?.node);
    out(`\nweft demo: cluster "${name}" with ${state.plan.nodes.length} nodes and ${samplePods.length} sample pods (mesh: ${install === undefined ? 'off' : `installed from ${shownSource}, mode ${mesh}`})`);
    if (install !== undefined) {
      out(`  install:  the chart's control-plane Deployment (${state.install?.pods.filter((p) => p.component.startsWith('control/')).length ?? 0} replicas) and agent DaemonSet, run with exactly their pod specs' args, env,`);
      out(`            volumes and securityContext against a simulated API server (/run/weft/sim/${name}/logs/kube-api.log)`);
    }
    out(`  status:   npx weft sim status --name ${name}`);
    out(`  a shell:  npx weft sim exec --name ${name} ${client?.name} -- sh`);
    out(`  logs:     /run/weft/sim/${name}/logs/  (one access-log line per connection in agent-<node>.log)`);
    if (views !== undefined) out(`  dashboard: ${views.dashboardUrl}   (topology, security, control plane; loopback only)`);
    if (tracePlan !== undefined) {
      out(`  traces:   every HTTP request is traced (a CLIENT span on the source agent, a SERVER span on the destination agent, one trace`);
      out(`            with the pod's traceparent), and one span per connection on each agent; exported to your collector at`);
      out(`            http://${tracePlan.target.host}:${tracePlan.target.port} (service weft-agent)`);
    }
    if (mesh !== 'off') {
      for (const n of state.plan.nodes) out(`  metrics:  nsenter --net=/run/netns/${n.netns} curl -s http://${n.bridgeIp}:15020/metrics   (${n.name}; readiness :15021/healthz/ready)`);
    }
    if (mesh !== 'off') out(`  route:    HTTPRoute ${SAMPLE_NAMESPACE}/hello-canary sends 80% of calls to demo/hello to hello's pods, 20% to echo's (/run/weft/sim/${name}/manifests/)`);
    out(`  client ${client?.name} on ${client?.node} calls ${mesh === 'off' ? 'pods on the other node by IP' : 'the services by VIP'} every second; Ctrl-C tears everything down.\n`);
    const started = Date.now();
    let i = 0;
    while (!stopping && (duration === 0 || Date.now() - started < duration * 1000)) {
      const target = mesh === 'off' ? targets[i % targets.length] : undefined;
      const service = state.plan.services[i % state.plan.services.length];
      const url = target !== undefined ? `http://${target.ip}:8080/` : `http://${service?.vip}:${service?.ports[0]?.port}/`;
      out(`  [${new Date().toISOString().slice(11, 19)}] ${client?.name} -> ${url}  ${await curl(readState(name), client?.name ?? '', url)}`);
      i++;
      if (mesh !== 'off' && i % 5 === 0) out(await meshSummary(state, tracePlan !== undefined));
      const hello = state.plan.services.find((x) => x.name === 'hello');
      if (mesh !== 'off' && i % 10 === 3 && hello !== undefined) out(await canarySummary(readState(name), client?.name ?? '', hello.vip));
      await sleep(1000);
    }
  } finally {
    out('\ntearing down...');
    await views?.close();
    await down(name);
    out('done: no namespaces, cgroups or processes of the demo are left.');
  }
  return 0;
}
