// Inbound enforcement in the simulated mesh (issue 9, point 2), in both capture modes: a TCP
// connection to an enrolled pod that did not come through the mesh is handed to the pod's
// node agent (15006) — from a pod outside the mesh on the same bridge and from one on another
// node — where PeerAuthentication decides: STRICT resets it (counted by reason, logged at a
// bounded rate), PERMISSIVE admits it under AuthorizationPolicy and records it as plaintext;
// switching the PERMISSIVE namespace to STRICT resets the plaintext connections open into it.
// Mesh clients (same node and cross-node) and probes from the pod's own node always pass; a
// pod that forges the node's address does not. Each mode runs on the mesh `weft sim` starts
// and on the rendered install (deploy/weft.yaml), where the agent's address is $(HOST_IP).
//
// Cluster (2 nodes):
//   node-1: vault/vault (namespace STRICT), open/web (PERMISSIVE), plain/outsider (not in the
//           mesh), demo/near (mesh client)
//   node-2: plain/far (not in the mesh), demo/client (mesh client)

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { MESH_SETUPS, simCluster, uniqueName } from '../support/sim.ts';
import { SimApiClient } from '../../src/sim/install/api-client.ts';
import { clusterDir } from '../../src/sim/state.ts';
import { AccessLog, curl, escape, inPodFast, startInPod, until, type Pod } from './capture-support.ts';
import { agentLog, agentMetrics, inNetns, node, sample } from './mesh-support.ts';

const HOLDER = join(import.meta.dirname, 'holder.py');

/** Namespace open's PeerAuthentication, switched to STRICT. */
const OPEN_STRICT = { apiVersion: 'weft.dev/v1alpha1', kind: 'PeerAuthentication', metadata: { name: 'strict-now', namespace: 'open' }, spec: { mtls: { mode: 'STRICT' } } };

/**
 * Adds (or, with undefined, removes) namespace open's STRICT PeerAuthentication where the
 * cluster's control plane reads it: the manifest directory `weft sim` watches, or the
 * simulated API server of an install.
 */
async function setOpenStrict(name: string, installed: boolean, on: boolean): Promise<void> {
  if (installed) {
    const api = new SimApiClient(join(clusterDir(name), 'install', 'api.sock'));
    const collection = '/apis/weft.dev/v1alpha1/namespaces/open/peerauthentications';
    if (on) await api.put(collection, OPEN_STRICT);
    else await api.remove(`${collection}/${OPEN_STRICT.metadata.name}`);
    return;
  }
  const file = join(clusterDir(name), 'manifests', 'open-strict.yaml');
  if (on) writeFileSync(file, JSON.stringify(OPEN_STRICT));
  else unlinkSync(file);
}

const MANIFESTS = `
${[['vault', true], ['open', true], ['demo', true], ['plain', false]].map(([ns, mesh]) => `---
apiVersion: v1
kind: Namespace
metadata: {name: ${String(ns)}${mesh === true ? ', labels: {weft.dev/mesh: enabled}' : ''}}
`).join('')}---
apiVersion: weft.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: strict, namespace: vault}
spec: {mtls: {mode: STRICT}}
${[
  ['vault', 'vault', 'node-1'],
  ['web', 'open', 'node-1'],
  ['outsider', 'plain', 'node-1'],
  ['near', 'demo', 'node-1'],
  ['far', 'plain', 'node-2'],
  ['client', 'demo', 'node-2'],
].map(([name, ns, nodeName]) => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}, labels: {app: ${name}}}
spec:
  nodeName: ${nodeName}
  containers: [{name: app, image: weft/echo, ports: [{containerPort: 8080}]}]
`).join('')}`;

for (const [setup, setupArgs] of MESH_SETUPS) for (const mode of ['ebpf', 'iptables'] as const) {
  test(`inbound enforcement: STRICT refuses plaintext, PERMISSIVE records it, mesh and node traffic pass (--mesh ${mode}, ${setup})`, { timeout: 240_000 }, async (t) => {
    if (!needsRoot(t, ['curl', 'nsenter', 'python3'])) return;
    await inboundSuite(t, mode, setupArgs);
  });
}

async function inboundSuite(t: TestContext, mode: 'ebpf' | 'iptables', setupArgs: readonly string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-inbound-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'cluster.yaml'), MANIFESTS);
  const name = uniqueName(mode === 'ebpf' ? 'ie' : 'ii');
  const s = await simCluster(t, name, ['--nodes', '2', '--manifests', dir, '--mesh', mode, ...setupArgs]);
  const installed = setupArgs.includes('--install');
  const pod = (n: string): Pod => s.pods.find((p) => p.name === n) ?? assert.fail(`pod ${n}`);
  const vault = pod('vault');
  const web = pod('web');
  const node1 = node(s, 'node-1');
  const log1 = new AccessLog(agentLog(name, 'node-1'));
  const url = (p: Pod): string => `http://${p.ip}:8080/`;
  const answer = (to: Pod, clientIp: string): RegExp => new RegExp(`^hello from ${to.name} ns=${to.namespace} node=${to.node} client=${escape(clientIp)}:\\d+\\n$`);
  const refusedCount = async (reason: string): Promise<number> => sample(await agentMetrics(s, 'node-1'), 'weft_inbound_plaintext_refused_total', { reason });

  await t.test('STRICT: pods outside the mesh, on the same node and on another, are reset; counted by reason and logged', async () => {
    const before = await refusedCount('mtls_required');
    for (const from of [pod('outsider'), pod('far')]) {
      const r = await curl(from, url(vault), 5);
      assert.notEqual(r.status, 0, `${from.name} -> vault must fail: ${r.body}`);
      assert.doesNotMatch(r.body, /hello from/, 'nothing from the pod');
      // Reset right after the handshake: curl sees it as a failed connect (7), a reset read
      // (56) or an empty reply (52), depending on when the RST lands; never a timeout (28).
      assert.ok([7, 52, 56].includes(r.status), `${from.name}: reset, not timed out (curl ${r.status}: ${r.stderr.trim()})`);
      assert.ok(r.ms < 3000, `refused at once (${Math.round(r.ms)} ms)`);
    }
    assert.equal(await refusedCount('mtls_required') - before, 2, 'both counted as mtls_required');
    const lines = log1.text().split('\n').filter((l) => l.includes('inbound plaintext connection refused') && l.includes('mtls_required'));
    assert.ok(lines.length >= 2, 'logged (at a bounded rate)');
    assert.match(lines.at(-1) ?? '', /vault\/vault takes mTLS only \(PeerAuthentication vault\/strict is STRICT\)/);
  });

  await t.test('STRICT: mesh clients pass, from another node (mTLS tunnel) and from the same node', async () => {
    const cross = await curl(pod('client'), url(vault));
    assert.equal(cross.status, 0, cross.stderr);
    assert.match(cross.body, answer(vault, node1.bridgeIp));
    const near = await curl(pod('near'), url(vault));
    assert.equal(near.status, 0, near.stderr);
    assert.match(near.body, answer(vault, node1.bridgeIp));
  });

  await t.test('STRICT: a probe from the pod\'s own node passes (kubelet\'s address is exempt)', async () => {
    const r = await inNetns(node1.netns, ['curl', '-sS', '-m', '5', url(vault)]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, answer(vault, node1.bridgeIp), 'straight from the node, not through the agent');
    log1.mark();
    await inNetns(node1.netns, ['curl', '-sS', '-m', '5', url(web)]);
    // (Records of the mesh clients above may still be on their way: only web's count.)
    const seen = (await log1.settle(0)).filter((x) => x.dst.address === `${web.ip}:8080`);
    assert.deepEqual(seen.map((x) => `${x.reporter} ${x.src.address ?? '?'} -> ${x.dst.address ?? '?'}`), [], 'the agent saw no probe');
  });

  await t.test('STRICT: a pod outside the mesh that forges the node\'s own addresses (exempt for probes) is still refused', async () => {
    // The outsider takes each node address as its own (a pod root can: NET_ADMIN in its netns)
    // and dials from it. Its ARP then claims that address on the bridge, so vault's replies
    // would come to it: only capture that cannot be fooled by a source address refuses it.
    const outsider = pod('outsider');
    for (const forged of [node1.bridgeIp, node1.ip]) {
      const add = await inNetns(outsider.netns, ['ip', 'addr', 'add', `${forged}/32`, 'dev', 'eth0']);
      assert.equal(add.status, 0, add.stderr);
      try {
        // Forget vault's MAC, so the outsider asks for it again with the forged address as sender.
        await inNetns(outsider.netns, ['ip', 'neigh', 'flush', 'dev', 'eth0']);
        const r = await inPodFast(outsider, ['curl', '-sS', '-m', '3', '--interface', forged, url(vault)]);
        assert.notEqual(r.status, 0, `outsider forging ${forged} must not reach vault: ${r.stdout}`);
        assert.doesNotMatch(r.stdout, /hello from/, `nothing from vault for a forged ${forged}`);
      } finally {
        await inNetns(outsider.netns, ['ip', 'addr', 'del', `${forged}/32`, 'dev', 'eth0']);
      }
    }
    // vault still answers its node (a probe) and the mesh after the attempt.
    const probe = await inNetns(node1.netns, ['curl', '-sS', '-m', '5', url(vault)]);
    assert.match(probe.stdout, answer(vault, node1.bridgeIp), `the node still reaches vault: ${probe.stderr}`);
    log1.mark();
    const near = await curl(pod('near'), url(vault));
    assert.match(near.body, answer(vault, node1.bridgeIp), `the mesh still reaches vault: ${near.stderr}`);
    await log1.settle(2, 3000); // its records are in before the next test marks the log
  });

  await t.test('PERMISSIVE: pods outside the mesh get in, and the destination agent records plaintext', async () => {
    const metricsBefore = await agentMetrics(s, 'node-1');
    const opened = (text: string): number => sample(text, 'istio_tcp_connections_opened_total', {
      reporter: 'destination', destination_workload: 'web', connection_security_policy: 'none',
    });
    for (const from of [pod('outsider'), pod('far')]) {
      log1.mark();
      const r = await curl(from, url(web));
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.body, answer(web, node1.bridgeIp), `${from.name}: through node-1's agent, not around it`);
      const recs = await log1.settle(1);
      assert.equal(recs.length, 1, `one record: ${JSON.stringify(recs)}`);
      const [rec] = recs;
      assert.equal(rec?.reporter, 'destination');
      assert.equal(rec.security, 'none');
      assert.equal(rec.src.address, `${from.ip}:${r.localPort}`);
      assert.equal(rec.src.workload, from.name, 'labelled as the pod it came from (no principal)');
      assert.equal(rec.src.identity, undefined);
      assert.equal(rec.dst.workload, 'web');
      assert.equal(rec.flags, '-');
    }
    assert.equal(opened(await agentMetrics(s, 'node-1')) - opened(metricsBefore), 2, 'istio_tcp_connections_opened_total{reporter="destination",connection_security_policy="none"}');
  });

  await t.test('PERMISSIVE to STRICT: the plaintext connection open into the namespace is reset; new ones are refused', async () => {
    const outsider = pod('outsider');
    const holder = startInPod(outsider, ['python3', HOLDER, web.ip, '8080', '60']);
    t.after(() => holder.stop());
    const open = JSON.parse(await holder.waitLine(/"event": "open"/, 20_000)) as { answer: string };
    // (The holder prints the body as it came: chunked.)
    assert.match(open.answer, new RegExp(`hello from web ns=open node=node-1 client=${escape(node1.bridgeIp)}:\\d+\\n`), 'plaintext through node-1\'s agent');
    log1.mark();
    const switched = Date.now();
    await setOpenStrict(name, installed, true);
    t.after(() => setOpenStrict(name, installed, false).catch(() => undefined));
    const closedLine = await until('the held connection to end', 10_000, () => holder.lines.find((l) => l.includes('"event": "closed"')));
    const closed = JSON.parse(closedLine) as { error: string; n: number };
    t.diagnostic(`closed ${Date.now() - switched} ms after the PeerAuthentication was written (${closedLine})`);
    assert.equal(closed.error, 'ConnectionResetError', 'reset, not ended cleanly');
    // Logged with the policy that closed it (port 8080 is HTTP: its records are per request).
    const logged = await until('the re-check\'s log line', 5000, () => log1.textSinceMark().split('\n').find((l) => l.includes('closed open connections the new policy no longer allows')));
    assert.match(logged, /"closed by a policy change: open\/web takes mTLS only now \(PeerAuthentication open\/strict-now is STRICT\)":1/, logged);
    const again = await curl(outsider, url(web), 5);
    assert.ok([7, 52, 56].includes(again.status), `a new plaintext connection is reset (curl ${again.status}: ${again.stderr.trim()})`);
    // Back to PERMISSIVE for whatever runs after.
    await setOpenStrict(name, installed, false);
    await until('plaintext into web to pass again', 15_000, async () => ((await curl(outsider, url(web), 5)).status === 0 ? true : undefined));
  });
}
