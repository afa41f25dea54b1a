// Transparent capture end to end (issue 3), in both modes: `weft sim up --mesh ebpf|iptables`
// with the real control plane and agents, unmodified curl in the pods. One cluster per mode,
// shared by the subtests, which run in order (later ones restart, kill and stop agent/node-1).
//
// Cluster (custom manifests, 2 nodes):
//   node-1: demo/client, demo/local (app echo), demo/leaver, plain/outsider (namespace not in the mesh)
//   node-2: demo/remote (app echo), demo/hello (app hello, the only endpoint of Service demo/hello),
//           demo/guarded (app guarded, PeerAuthentication STRICT for that workload only)
// The echo server answers `client=<ip:port>`: the node's bridge address when an agent
// connected to it (captured), the client pod's own address when not.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { needsRoot } from '../support/root.ts';
import { simCluster, uniqueName, weft, type SimStatus } from '../support/sim.ts';
import { runInside, alive } from '../../src/sim/processes.ts';
import { parseCgroupTree, type CgroupTreeEntry } from '../../src/redirect/bpftool.ts';
import { AccessLog, configDump, curl, escape, until, within, type Pod } from './capture-support.ts';

type Mode = 'ebpf' | 'iptables';
type Status = SimStatus & { meshProcesses: Record<string, number> };

const HELLO_VIP = '198.19.0.11';
const HELLO_SERVICE = 'hello.demo.svc.cluster.local';
const EXCLUDED_PORT = 9090;
const PIN_BASE = '/sys/fs/bpf/weft';

const MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {weft.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: demo}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: echo, namespace: demo}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: hello, namespace: demo}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: plain}
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: demo}
spec:
  clusterIP: ${HELLO_VIP}
  selector: {app: hello}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: weft.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: guarded-strict, namespace: demo}
spec: {selector: {matchLabels: {app: guarded}}, mtls: {mode: STRICT}}
${[
  ['client', 'demo', 'node-1', 'client', 'client'],
  ['local', 'demo', 'node-1', 'echo', 'echo'],
  ['leaver', 'demo', 'node-1', 'client', 'leaver'],
  ['outsider', 'plain', 'node-1', 'default', 'outsider'],
  ['remote', 'demo', 'node-2', 'echo', 'echo'],
  ['hello', 'demo', 'node-2', 'hello', 'hello'],
  ['guarded', 'demo', 'node-2', 'echo', 'guarded'],
].map(([name, ns, node, sa, app]) => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}, labels: {app: ${app}}}
spec:
  nodeName: ${node}
  serviceAccountName: ${sa}
  containers: [{name: app, image: weft/echo, ports: [{containerPort: 8080}]}]
`).join('')}`;

// ---- the node's capture state --------------------------------------------------------------

function bpftoolTree(cgroup: string): CgroupTreeEntry[] {
  const r = spawnSync('bpftool', ['-j', 'cgroup', 'tree', cgroup], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bpftool cgroup tree ${cgroup}: ${r.stderr}`);
  return parseCgroupTree(JSON.parse(r.stdout === '' ? '[]' : r.stdout) as unknown);
}

/** Attach types and program ids on exactly this cgroup (not its children). */
function attachedAt(cgroup: string): { type: string | undefined; id: number }[] {
  const entry = bpftoolTree(cgroup).find((e) => e.cgroup.replace(/\/$/, '') === cgroup);
  return (entry?.programs ?? []).map((p) => ({ type: p.attachType, id: p.id })).sort((a, b) => String(a.type).localeCompare(String(b.type)));
}

function natRules(netns: string): string {
  return execFileSync('nsenter', [`--net=/run/netns/${netns}`, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });
}

/** A process's start time in clock ticks since boot (/proc/PID/stat field 22); PIDs wrap, this does not. */
function startTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

/** The agent runs as a DaemonSet pod: SO_ORIGINAL_DST is answered on its pod's cgroup (its container's parent). */
function agentPodCgroup(s: SimStatus): string {
  const container = s.meshCgroups['agent/node-1'];
  if (container === undefined) throw new Error('sim status names no cgroup for agent/node-1');
  return dirname(container);
}

async function status(name: string): Promise<Status> {
  const s = await weft(['sim', 'status', '--name', name, '--json']);
  assert.equal(s.status, 0, s.stderr);
  return JSON.parse(s.stdout) as Status;
}

async function mesh(name: string, ...args: string[]): Promise<void> {
  const r = await weft(['sim', 'mesh', '--name', name, ...args], { timeoutMs: 60_000 });
  assert.equal(r.status, 0, `weft sim mesh ${args.join(' ')}: ${r.stderr}`);
}

// ---- the tests -----------------------------------------------------------------------------

for (const mode of ['ebpf', 'iptables'] as const) {
  test(`transparent capture in the simulated mesh (--mesh ${mode})`, { timeout: 180_000 }, async (t) => {
    if (!needsRoot(t, ['curl', 'nsenter', 'bpftool', 'iptables-save'])) return;
    await captureSuite(t, mode);
  });
}

async function captureSuite(t: TestContext, mode: Mode): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-capture-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'capture.yaml'), MANIFESTS);
  const name = uniqueName(mode === 'ebpf' ? 'ce' : 'ci');
  const s = await simCluster(t, name, ['--nodes', '2', '--manifests', dir, '--mesh', mode, '--agent-args', `--exclude-ports ${EXCLUDED_PORT} --exclude-inbound-ports ${EXCLUDED_PORT}`]);

  const pod = (ref: string): Pod => {
    const [ns, n] = ref.split('/');
    const p = s.pods.find((x) => x.namespace === ns && x.name === n);
    assert.ok(p, `pod ${ref} in the status`);
    return p;
  };
  const node = (n: string) => {
    const x = s.nodes.find((y) => y.name === n);
    assert.ok(x);
    return x;
  };
  const client = pod('demo/client');
  const local = pod('demo/local');
  const leaver = pod('demo/leaver');
  const outsider = pod('plain/outsider');
  const remote = pod('demo/remote');
  const hello = pod('demo/hello');
  const guarded = pod('demo/guarded');
  const node1 = node('node-1');
  const node2 = node('node-2');
  const logs = join('/run/weft/sim', name, 'logs');
  const log1 = new AccessLog(join(logs, 'agent-node-1.log'));
  const log2 = new AccessLog(join(logs, 'agent-node-2.log'));
  const mark = (): void => {
    log1.mark();
    log2.mark();
  };
  /** Reply text for a connection an agent of `via` made (captured) or `from` made itself (direct). */
  const answeredBy = (to: Pod, clientIp: string): RegExp => new RegExp(`^hello from ${to.name} ns=${to.namespace} node=${to.node} client=${escape(clientIp)}:\\d+\\n$`);
  assert.equal(s.pods.filter((p) => p.enrolled).length, 6, 'six pods in the mesh, plain/outsider not');
  assert.equal(outsider.enrolled, false);

  /** One request from client through capture, checked at both agents. */
  const capturedOnce = async (from: Pod, to: Pod, url: string, service: string | undefined): Promise<void> => {
    mark();
    const r = await curl(from, url);
    assert.equal(r.status, 0, `curl ${url} from ${from.name}: ${r.stderr}`);
    const viaNode = to.node === 'node-1' ? node1 : node2;
    assert.match(r.body, answeredBy(to, viaNode.bridgeIp), `${url}: captured, so the server sees ${to.node}'s agent`);
    const crossNode = from.node !== to.node;
    const at1 = await log1.settle(1);
    assert.equal(at1.length, 1, `exactly one record at node-1's agent for ${url}: ${JSON.stringify(at1)}`);
    const [rec] = at1;
    assert.ok(rec);
    assert.equal(rec.reporter, 'source');
    assert.equal(rec.src.address, `${from.ip}:${r.localPort}`, 'the record is this curl\'s connection');
    assert.equal(rec.src.workload, from.name);
    assert.equal(rec.dst.workload, to.name, 'the original destination, resolved');
    assert.equal(rec.dst.address, `${to.ip}:8080`);
    assert.equal(rec.service, service, 'a VIP names its service; a pod address none');
    assert.equal(rec.security, crossNode ? 'mutual_tls' : 'none');
    assert.equal(rec.flags, '-');
    assert.ok(rec.bytes_sent >= Buffer.byteLength(r.body), 'the reply went back through the agent');
    const at2 = await log2.settle(crossNode ? 1 : 0, crossNode ? 5000 : 0);
    assert.equal(at2.length, crossNode ? 1 : 0, `records at node-2's agent: ${JSON.stringify(at2)}`);
    if (crossNode) {
      assert.equal(at2[0]?.reporter, 'destination');
      assert.equal(at2[0]?.dst.address, `${to.ip}:8080`);
      assert.equal(at2[0]?.src.identity, `spiffe://cluster.local/ns/${from.namespace}/sa/${from.serviceAccount}`);
    }
  };
  const helloUrl = `http://${HELLO_VIP}/`;
  const remoteUrl = `http://${remote.ip}:8080/`;

  await t.test('unmodified curl in an enrolled pod: a service VIP and a pod on another node are captured, with the original destination', async () => {
    const dump = await configDump(node1.netns);
    assert.equal(dump.capture.mode, mode);
    assert.deepEqual(dump.capture.enrolled, ['demo/client', 'demo/leaver', 'demo/local']);
    await capturedOnce(client, hello, helloUrl, HELLO_SERVICE);
    await capturedOnce(client, remote, remoteUrl, undefined);
    await capturedOnce(client, local, `http://${local.ip}:8080/`, undefined);
  });

  await t.test('the agent\'s own connections are not captured: one record per request, none from the agent\'s addresses', async () => {
    mark();
    const ports: number[] = [];
    for (let i = 0; i < 3; i++) {
      for (const url of [helloUrl, `http://${local.ip}:8080/`]) {
        const r = await curl(client, url);
        assert.equal(r.status, 0, r.stderr);
        ports.push(r.localPort);
      }
    }
    const recs = await log1.settle(ports.length);
    assert.equal(recs.length, ports.length, `one record per request at the source agent, no more: ${JSON.stringify(recs.map((x) => x.src.address))}`);
    assert.deepEqual(recs.map((x) => x.src.address).sort(), ports.map((p) => `${client.ip}:${p}`).sort());
    if (mode === 'ebpf') {
      // The agent's cgroup answers SO_ORIGINAL_DST and is never redirected.
      const agentCgroup = agentPodCgroup(s);
      assert.deepEqual(attachedAt(agentCgroup).map((a) => a.type), ['getsockopt']);
    } else {
      // Rules match enrolled pods' source addresses arriving from the bridge; the agent's own
      // connections start in OUTPUT and never meet them.
      assert.doesNotMatch(natRules(node1.netns), /-A OUTPUT .*WEFT/);
    }
  });

  await t.test('an unenrolled pod is not captured, but its connection to a mesh pod is: the destination agent takes it (inbound, PERMISSIVE) and records it as plaintext', async () => {
    mark();
    const viaInbound = await curl(outsider, remoteUrl);
    assert.equal(viaInbound.status, 0, viaInbound.stderr);
    assert.match(viaInbound.body, answeredBy(remote, node2.bridgeIp), 'the server sees node-2\'s agent, not the pod outside the mesh: no inbound bypass');
    const [rec] = await log2.settle(1);
    assert.ok(rec, 'node-2\'s agent recorded it');
    assert.equal(rec.reporter, 'destination');
    assert.equal(rec.security, 'none', 'plaintext: connection_security_policy none');
    assert.equal(rec.src.address, `${outsider.ip}:${viaInbound.localPort}`, 'with the real client address');
    assert.equal(rec.src.identity, undefined, 'and no principal');
    assert.equal(rec.dst.address, `${remote.ip}:8080`);
    const vip = await curl(outsider, helloUrl, 3);
    assert.notEqual(vip.status, 0, 'a VIP routes nowhere without (outbound) capture');
    assert.notEqual(vip.status, 28, `it fails at once rather than hanging to the timeout (${Math.round(vip.ms)} ms)`);
    assert.deepEqual(await log1.settle(0), [], 'node-1\'s agent saw nothing: the pod is not captured outbound');
    assert.ok(!(await configDump(node1.netns)).capture.enrolled.includes('plain/outsider'));
  });

  await t.test('STRICT: the same pod outside the mesh is reset by a STRICT pod (curl); a mesh client still gets in over mTLS', async () => {
    const guardedUrl = `http://${guarded.ip}:8080/`;
    const refused = await curl(outsider, guardedUrl, 5);
    assert.notEqual(refused.status, 0, `outsider -> guarded must fail: ${refused.body}`);
    assert.doesNotMatch(refused.body, /hello from/, 'not one byte from the pod');
    // Reset right after the handshake: a failed connect (7), a reset read (56) or an empty
    // reply (52) depending on when the RST lands; never a timeout (28).
    assert.ok([7, 52, 56].includes(refused.status), `reset, not timed out (curl ${refused.status}: ${refused.stderr.trim()})`);
    const text = await until('the refusal in node-2\'s log', 5000, () => {
      const lines = log2.text().split('\n').filter((l) => l.includes('inbound plaintext connection refused') && l.includes('demo/guarded'));
      return lines.length > 0 ? lines.join('\n') : undefined;
    });
    assert.match(text, /PeerAuthentication demo\/guarded-strict is STRICT/);
    await capturedOnce(client, guarded, guardedUrl, undefined);
  });

  await t.test(`excluded ports are not captured (--exclude-ports and --exclude-inbound-ports ${EXCLUDED_PORT})`, async () => {
    // A second listener in demo/remote, owned by this test, stopped by PID, and gone by itself after a minute.
    const script = `require('node:http').createServer((q, s) => s.end('port ${EXCLUDED_PORT} client=' + q.socket.remoteAddress + '\\n'))`
      + `.listen(${EXCLUDED_PORT}, '0.0.0.0', () => console.log('listening')); setTimeout(() => process.exit(0), 60000);`;
    const { child, done } = runInside({ cgroup: remote.cgroup, netns: remote.netns }, [process.execPath, '-e', script], ['ignore', 'pipe', 'inherit']);
    try {
      await within(new Promise<void>((resolve) => { child.stdout?.once('data', () => resolve()); }), 10_000, 'the second listener to start');
      mark();
      const r = await curl(client, `http://${remote.ip}:${EXCLUDED_PORT}/`);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.body, `port ${EXCLUDED_PORT} client=${client.ip}\n`, 'the listener sees the client pod: not captured');
      assert.deepEqual(await log1.settle(0), [], 'no record for an excluded port');
      // The same pod pair on the service port is still captured.
      await capturedOnce(client, remote, remoteUrl, undefined);
    } finally {
      if (child.pid !== undefined && alive(child.pid)) process.kill(child.pid, 'SIGTERM');
      await done;
    }
  });

  await t.test('pods started before the agent are captured once it is up (restart agent/node-1)', async () => {
    const before = (await status(name)).meshProcesses['agent/node-1'];
    await mesh(name, 'restart', 'agent/node-1');
    const after = (await status(name)).meshProcesses['agent/node-1'];
    assert.ok(before !== undefined && after !== undefined && after !== before && alive(after), 'a new agent process');
    assert.ok(startTicks(client.pid) < startTicks(after), 'the pod\'s workload is older than the agent');
    // Right after `restart` returned (the agent said ready), with no retry.
    await capturedOnce(client, hello, helloUrl, HELLO_SERVICE);
    await capturedOnce(client, remote, remoteUrl, undefined);
  });

  await t.test('an agent killed with SIGKILL and restarted reclaims its capture and works', async () => {
    const pins = join(PIN_BASE, `${name}-node-1`);
    const before = mode === 'ebpf' ? attachedAt(client.cgroup) : [];
    if (mode === 'ebpf') assert.deepEqual(before.map((a) => a.type), ['connect4', 'connect6', 'getpeername4', 'getpeername6', 'sock_ops']);
    const killed = (await status(name)).meshProcesses['agent/node-1'];
    log1.mark();
    await mesh(name, 'restart', 'agent/node-1', '--kill');
    assert.ok(killed !== undefined && !alive(killed));
    const restartLog = readFileSync(join(logs, 'agent-node-1.log'), 'utf8').split('\n').slice(-400).join('\n');
    if (mode === 'ebpf') {
      assert.ok(existsSync(pins), 'the pins outlived the killed agent');
      assert.match(restartLog, /adopting the eBPF capture a previous agent left/);
      assert.deepEqual(attachedAt(client.cgroup), before, 'the same programs, attached once (no duplicates)');
      assert.deepEqual(attachedAt(agentPodCgroup(s)).map((a) => a.type), ['getsockopt']);
    } else {
      assert.match(restartLog, /adopted enrolled pods from existing WEFT chains/);
      const nat = natRules(node1.netns);
      assert.equal(nat.match(/^-A PREROUTING -j WEFT-PREROUTING$/gm)?.length, 1, nat);
      assert.equal(nat.match(/weft-pod=demo\/client"/g)?.length, 1, nat);
    }
    await capturedOnce(client, hello, helloUrl, HELLO_SERVICE);
    await capturedOnce(client, local, `http://${local.ip}:8080/`, undefined);
  });

  await t.test('a pod taken out of the mesh (weft.dev/mesh: disabled) is released and goes direct', async () => {
    await capturedOnce(leaver, remote, remoteUrl, undefined);
    // Relabel the pod in the control plane's manifests; write beside, then rename, so the
    // watcher never reads half a file.
    const manifestsDir = join('/run/weft/sim', name, 'manifests');
    const file = readdirSync(manifestsDir).find((f) => f.endsWith('capture.yaml'));
    assert.ok(file);
    const docs = parseAllDocuments(readFileSync(join(manifestsDir, file), 'utf8')).map((d) => d.toJS() as { kind: string; metadata: { name: string; labels?: Record<string, string> } });
    const leaverDoc = docs.find((d) => d.kind === 'Pod' && d.metadata.name === 'leaver');
    assert.ok(leaverDoc);
    leaverDoc.metadata.labels = { ...leaverDoc.metadata.labels, 'weft.dev/mesh': 'disabled' };
    const tmp = join('/run/weft/sim', name, `.${file}.tmp`);
    writeFileSync(tmp, docs.map((d) => stringify(d)).join('---\n'));
    renameSync(tmp, join(manifestsDir, file));

    const released = await until('demo/leaver to leave capture.enrolled', 20_000, async () => {
      const enrolled = (await configDump(node1.netns)).capture.enrolled;
      return enrolled.includes('demo/leaver') ? undefined : enrolled;
    });
    assert.deepEqual(released, ['demo/client', 'demo/local']);
    if (mode === 'ebpf') assert.deepEqual(attachedAt(leaver.cgroup), [], 'nothing attached to the pod\'s cgroup');
    else assert.doesNotMatch(natRules(node1.netns), /weft-pod=demo\/leaver/);
    mark();
    const direct = await curl(leaver, remoteUrl);
    assert.equal(direct.status, 0, direct.stderr);
    // Not captured at its own node any more; node-2 still takes it inbound for its mesh pod.
    assert.match(direct.body, answeredBy(remote, node2.bridgeIp));
    assert.equal((await log2.settle(1)).at(-1)?.src.address, `${leaver.ip}:${direct.localPort}`);
    const vip = await curl(leaver, helloUrl, 3);
    assert.notEqual(vip.status, 0, 'its VIP connection is no longer captured, so it fails');
    assert.notEqual(vip.status, 28, 'at once, not by timing out');
    assert.deepEqual(await log1.settle(0), []);
    // The others on the node are still captured.
    await capturedOnce(client, remote, remoteUrl, undefined);
  });

  await t.test('SIGTERM (fail-open default): stop agent/node-1 leaves no capture on the node; traffic goes direct or fails fast', async () => {
    await mesh(name, 'stop', 'agent/node-1');
    if (mode === 'ebpf') {
      assert.equal(existsSync(join(PIN_BASE, `${name}-node-1`)), false, 'no pins for node-1');
      assert.ok(existsSync(join(PIN_BASE, `${name}-node-2`)), 'node-2 keeps its own');
      const left = bpftoolTree(node1.cgroup).filter((e) => e.programs.length > 0);
      assert.deepEqual(left, [], 'nothing attached under node-1\'s cgroups');
    } else {
      assert.doesNotMatch(natRules(node1.netns), /WEFT/, 'no WEFT chains or jumps in node-1');
      assert.match(natRules(node2.netns), /WEFT-CAPTURE/, 'node-2 keeps its own');
    }
    const direct = await curl(client, remoteUrl);
    assert.equal(direct.status, 0, direct.stderr);
    assert.match(direct.body, answeredBy(remote, node2.bridgeIp), 'not captured at node-1; node-2 takes it inbound (PERMISSIVE)');
    const vip = await curl(client, helloUrl, 10);
    assert.notEqual(vip.status, 0, 'a VIP routes nowhere without the agent');
    assert.notEqual(vip.status, 28, 'it fails, it does not hang until the timeout');
    assert.ok(vip.ms < 3000, `failed in ${Math.round(vip.ms)} ms`);
  });

  await t.test('sim down leaves no pins, attached programs or WEFT chains', async () => {
    const progIds = mode === 'ebpf'
      ? readdirSync(join(PIN_BASE, `${name}-node-2`, 'progs')).map((p) => {
        const info = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'pinned', join(PIN_BASE, `${name}-node-2`, 'progs', p)], { encoding: 'utf8' })) as { id: number };
        return info.id;
      })
      : [];
    if (mode === 'ebpf') assert.equal(progIds.length, 7);
    const d = await weft(['sim', 'down', '--name', name]);
    assert.equal(d.status, 0, d.stderr);
    const pins = existsSync(PIN_BASE) ? readdirSync(PIN_BASE).filter((e) => e.startsWith(`${name}-`)) : [];
    assert.deepEqual(pins, [], 'no pinned objects of this cluster');
    const cgroupMount = join(node1.cgroup, '..', '..');
    const attached = bpftoolTree(cgroupMount).filter((e) => e.cgroup.includes(`/weft-${name}/`));
    assert.deepEqual(attached, [], 'no programs attached under the cluster\'s cgroups');
    for (const id of progIds) {
      await until(`program ${id} to be freed`, 5000, () => (spawnSync('bpftool', ['prog', 'show', 'id', String(id)]).status !== 0 ? true : undefined));
    }
    assert.doesNotMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(`weft-${name}-`), 'the node namespaces (and their nat tables) are gone');
    assert.doesNotMatch(execFileSync('iptables-save', { encoding: 'utf8' }), /WEFT/, 'nothing in the root namespace\'s iptables');
  });
}
