// `npm start` runs `weft demo`: a 2-node mesh, run from the rendered install (deploy/weft.yaml)
// as a cluster runs it, with a client calling services by VIP. The demo must work from its
// very first request and leave nothing behind, after --duration or on Ctrl-C.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Root } from '../../src/sim/cgroups.ts';
import { needsRoot } from '../support/root.ts';
import { uniqueName, weft } from '../support/sim.ts';

/** Nothing of cluster `name` is left: namespaces, its cgroup tree, BPF pins, state directory, processes. */
function assertNothingLeft(name: string, pids: readonly number[]): void {
  assert.doesNotMatch(execFileSync('ip', ['netns', 'list']).toString(), new RegExp(`weft-${name}-`));
  assert.equal(existsSync(join(cgroup2Root(), `weft-${name}`)), false, 'the cluster\'s cgroup tree is gone');
  for (const base of ['/sys/fs/bpf/weft', '/sys/fs/bpf/weft-splice']) {
    const left = existsSync(base) ? readdirSync(base).filter((e) => e.startsWith(`${name}-`)) : [];
    assert.deepEqual(left, [], `no pins of ${name} under ${base}`);
  }
  assert.equal(existsSync(`/run/weft/sim/${name}`), false, 'the state directory is gone');
  for (const pid of pids) assert.equal(existsSync(`/proc/${pid}`), false, `process ${pid} of the demo is gone`);
}

/** The PIDs the cluster's state file records (mesh, workloads, API server), read while it runs. */
async function clusterPids(name: string): Promise<number[]> {
  const r = await weft(['sim', 'status', '--name', name, '--json']);
  const s = JSON.parse(r.stdout) as { meshProcesses: Record<string, number>; pods: { pid?: number }[] };
  return [...Object.values(s.meshProcesses), ...s.pods.flatMap((p) => (p.pid === undefined ? [] : [p.pid]))];
}

test('the demo: every request through the mesh answers, and teardown is complete', async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter'])) return;
  const name = uniqueName('d');
  t.after(async () => { await weft(['sim', 'down', '--name', name]); });
  const r = await weft(['demo', '--name', name, '--duration', '6']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /mesh: installed from deploy\/weft\.yaml, mode auto\)/, 'the demo runs the rendered install');
  assert.match(r.stdout, /2 control-plane replica\(s\) and 2 agents ready/);
  const calls = r.stdout.split('\n').filter((l) => / -> http:\/\/198\.19\./.test(l));
  assert.ok(calls.length >= 3, `the client made calls:\n${r.stdout}`);
  for (const call of calls) assert.match(call, /hello from (echo|hello)-\d-\d ns=demo node=node-\d client=198\.18\.\d\.1:/, 'answered through the agent');
  const summaries = [...r.stdout.matchAll(/-- mesh: node-1: ([1-9]\d*) requests sent \(\d+ mTLS\), \d+ served \(\d+ mTLS\); node-2: 0 requests sent \(0 mTLS\), (\d+) served \((\d+) mTLS\)/g)];
  assert.ok(summaries.length > 0, `a mesh summary line:\n${r.stdout}`);
  // The client is on node-1: what node-2 served came through the tunnel, every request over mutual TLS.
  for (const m of summaries) assert.equal(m[3], m[2], `node-2 served over mutual TLS: ${m[0]}`);
  // The canary HTTPRoute splits demo/hello 80/20 (50 calls: all answered, some by echo, most by hello).
  const canary = /route demo\/hello-canary \(HTTPRoute, 80\/20\): of 50 calls .* (\d+) reached hello, (\d+) echo/.exec(r.stdout) ?? assert.fail(`no canary line:\n${r.stdout}`);
  const [hello, echo] = [Number(canary[1]), Number(canary[2])];
  assert.equal(hello + echo, 50);
  assert.ok(echo >= 1 && echo <= 25, `echo answered ${echo} of 50`);
  assert.match(r.stdout, /metrics: +nsenter --net=\/run\/netns\/weft-\w+-n-node-1 curl -s http:\/\/198\.18\.1\.1:15020\/metrics/);
  assertNothingLeft(name, []);
});

test('the demo prints the dashboard URL, serves it while it runs, relays request and connection traces to a collector on loopback, and Ctrl-C leaves nothing', { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter'])) return;
  const { startOtlpReceiver } = await import('../support/otlp-receiver.ts');
  const { spawn } = await import('node:child_process');
  const { createInterface } = await import('node:readline');
  const { WEFT } = await import('../support/sim.ts');
  const receiver = await startOtlpReceiver('127.0.0.1', 0);
  t.after(() => receiver.close());
  const name = uniqueName('d');
  t.after(async () => { await weft(['sim', 'down', '--name', name]); });
  // Its own process group, as a terminal's foreground job: Ctrl-C signals the whole group.
  const demo = spawn(WEFT, ['demo', '--name', name], {
    stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`, OTEL_BSP_SCHEDULE_DELAY: '500' },
  });
  const lines: string[] = [];
  let stderr = '';
  demo.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const exited = new Promise<number>((resolve) => demo.once('close', (code) => resolve(code ?? -1)));
  // The banner arrives in several writes; wait for its last line (the client's) so a pipe
  // chunk boundary between the dashboard and traces lines cannot fail the test.
  const dashboard = await new Promise<string>((resolve, reject) => {
    let url: string | undefined;
    createInterface({ input: demo.stdout }).on('line', (line) => {
      lines.push(line);
      const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(line);
      if (m !== null) url = m[1];
      if (url !== undefined && /^ {2}client /.test(line)) resolve(url);
    });
    void exited.then(() => reject(new Error(`the demo ended without a dashboard line:\n${lines.join('\n')}`)));
  });
  assert.ok(lines.some((l) => /traces: +every HTTP request is traced \(a CLIENT span on the source agent, a SERVER span on the destination agent/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /^ +http:\/\/127\.0\.0\.1:\d+ \(service weft-agent\)$/.test(l)), lines.join('\n'));
  // The dashboard answers on the printed URL while the demo runs, with the demo's traffic on it.
  let edges = 0;
  for (let i = 0; i < 30 && edges === 0; i++) {
    const m = await (await fetch(`${dashboard}api/mesh`)).json() as { topology: { edges: { from: string; security: string }[] } };
    edges = m.topology.edges.filter((e) => e.from === 'workload:demo/echo-1-0').length;
    if (edges === 0) await new Promise((r) => setTimeout(r, 1000));
  }
  assert.ok(edges > 0, 'the dashboard shows the demo client\'s edges');
  const pids = await clusterPids(name);
  // Traces reached the collector on the host's loopback: spans from both agents.
  await receiver.waitFor((s) => s.some((x) => x.attributes['weft.node'] === 'node-1') && s.some((x) => x.attributes['weft.node'] === 'node-2'), 10_000, 'spans from both agents');
  assert.ok(receiver.spans.every((s) => s.resource['service.name'] === 'weft-agent'));
  // The client's requests across nodes: a CLIENT span on node-1 and, in its trace, its child SERVER span on node-2.
  await receiver.waitFor((s) => s.some((c) => c.kind === 3 && c.attributes['weft.node'] === 'node-1' && c.attributes['http.request.method'] === 'GET'
    && s.some((x) => x.kind === 2 && x.attributes['weft.node'] === 'node-2' && x.traceId === c.traceId && x.parentSpanId === c.spanId)), 10_000, 'a request traced across both agents');
  // The summary counts the exported spans (it comes every 5 calls).
  for (let i = 0; i < 40 && !lines.some((l) => /-- mesh: node-1: .*spans exported/.test(l)); i++) await new Promise((r) => setTimeout(r, 500));
  assert.match(lines.join('\n'), /-- mesh: node-1: [1-9]\d* requests sent .*spans exported/);

  // Ctrl-C: SIGINT to the demo's whole process group, as a terminal sends it.
  process.kill(-(demo.pid ?? 0), 'SIGINT');
  assert.equal(await exited, 0, `${lines.join('\n')}\n${stderr}`);
  assert.ok(lines.some((l) => /^done: no namespaces, cgroups or processes of the demo are left\.$/.test(l)), lines.join('\n'));
  // Nothing is left: the forward's port is closed and the cluster is gone.
  await assert.rejects(fetch(`${dashboard}api/mesh`));
  assertNothingLeft(name, pids);
});
