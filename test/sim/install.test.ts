// The install, tested by running it: `weft sim up --install deploy/weft.yaml` starts the
// control-plane Deployment's two replicas and the agent DaemonSet from the rendered chart
// (exactly its args, env, volumes, probes, user, capabilities and read-only root) against the
// simulated API server; the mesh carries traffic between nodes; killing either control-plane
// replica by PID breaks no connection, and agents bootstrapped afterwards get their
// certificates from the other. What the chart promises besides: the agent and the control
// plane write nowhere but their declared volumes, and the agent keeps working across the
// kubelet's rotation of its projected token (an expired one is refused until it is rotated).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName, weft, type SimStatus } from '../support/sim.ts';
import { agentMetrics, clientInPod, eventually, inNetns, pod, sample } from './mesh-support.ts';

const DEPLOY = join(import.meta.dirname, '..', '..', 'deploy', 'weft.yaml');
/** BPF (39), PERFMON (38), NET_ADMIN (12), SYS_ADMIN (21), SYS_PTRACE (19): what the chart grants the agent, and nothing else. */
const AGENT_CAPS = (1n << 39n) | (1n << 38n) | (1n << 12n) | (1n << 21n) | (1n << 19n);

type Status = SimStatus & { meshProcesses: Record<string, number> };

async function status(name: string): Promise<Status> {
  const r = await weft(['sim', 'status', '--name', name, '--json']);
  return JSON.parse(r.stdout) as Status;
}

function proc(pid: number): { args: string[]; uid: number; capEff: bigint } {
  const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { args, uid: Number(/^Uid:\s+(\d+)/m.exec(st)?.[1]), capEff: BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(st)?.[1] ?? '0'}`) };
}

/** The rendered container args of a workload in deploy/weft.yaml. */
function renderedArgs(kind: string): string[] {
  const docs = parseAllDocuments(readFileSync(DEPLOY, 'utf8')).map((d) => d.toJS() as { kind?: string; spec?: { template: { spec: { containers: { args: string[] }[] } } } });
  return docs.find((d) => d?.kind === kind)?.spec?.template.spec.containers[0]?.args ?? [];
}

/** The mount points of a process's mount namespace that it may write to. */
function writableMounts(pid: number): string[] {
  return readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').filter((l) => l !== '').flatMap((l) => {
    const [, , , , point, options] = l.split(' ');
    return options?.split(',').includes('rw') === true ? [point ?? ''] : [];
  });
}

/** A container's own kernel file systems, writable in any container (/proc, /dev and their submounts). */
const kernelOwn = (point: string): boolean => /^\/(proc|dev)(\/|$)/.test(point);

/** A metric of control-plane replica `control/<i>` (pod weft-control-<i>), read in its own netns. */
async function controlMetric(s: Status, replica: string, metric: string): Promise<number> {
  const p = pod(s, `weft-control-${replica.split('/')[1] ?? ''}`);
  const r = await inNetns(p.netns, ['curl', '-s', '-m', '3', `http://${p.ip}:15014/metrics`]);
  return r.status === 0 ? sample(r.stdout, metric) : Number.NaN;
}

test('sim up --install deploy/weft.yaml: the chart runs the mesh; either control-plane replica may die', { timeout: 420_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'openssl', 'setpriv', 'unshare'])) return;
  const name = uniqueName('in');
  // The cgroupfs driver here (the other tests run the default, systemd): the agent finds its pods by UID under either.
  await simCluster(t, name, ['--nodes', '2', '--pods-per-node', '2', '--cgroup-driver', 'cgroupfs', '--install', DEPLOY]);
  const s = await status(name);
  const dir = mkdtempSync(join(tmpdir(), 'weft-install-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  await t.test('each pod runs exactly what its template says, as its securityContext says', () => {
    assert.deepEqual(Object.keys(s.meshProcesses).sort(), ['agent/node-1', 'agent/node-2', 'control/0', 'control/1']);
    for (const n of s.nodes) {
      const p = proc(s.meshProcesses[`agent/${n.name}`] ?? 0);
      const expanded = renderedArgs('DaemonSet').map((a) => a.replace('$(HOST_IP)', n.ip).replace('$(NODE_NAME)', n.name));
      assert.deepEqual(p.args.slice(2), expanded, `agent/${n.name}: the DaemonSet's args, $(VAR)s expanded`);
      assert.equal(p.uid, 0);
      assert.equal(p.capEff, AGENT_CAPS, `agent/${n.name} holds only BPF, PERFMON, NET_ADMIN, SYS_ADMIN and SYS_PTRACE (CapEff ${p.capEff.toString(16)})`);
    }
    for (const c of ['control/0', 'control/1']) {
      const p = proc(s.meshProcesses[c] ?? 0);
      assert.deepEqual(p.args.slice(2), renderedArgs('Deployment'), `${c}: the Deployment's args`);
      assert.equal(p.uid, 65532, `${c} runs as the chart's non-root user`);
      assert.equal(p.capEff, 0n);
    }
    for (const n of s.nodes) assert.match(s.meshCgroups[`agent/${n.name}`] ?? '', new RegExp(`/${n.name}/kubepods/burstable/pod[0-9a-f-]{36}/[0-9a-f]{64}$`), 'the agent pod sits where the kubelet (cgroupfs) puts it');
    // readOnlyRootFilesystem: writable are only the declared read-write volumes (the agent's bpffs,
    // state hostPath — /var/run is /run — and /tmp emptyDir; none for the control plane).
    for (const [component, pid] of Object.entries(s.meshProcesses)) {
      const want = component.startsWith('agent/') ? ['/run/weft', '/sys/fs/bpf', '/tmp'] : [];
      assert.deepEqual(writableMounts(pid).filter((m) => !kernelOwn(m)).sort(), want, `${component}: writable mounts`);
      const probe = spawnSync('nsenter', ['-t', String(pid), '-m', '--', 'sh', '-c', 'echo x > /etc/weft-write-probe'], { encoding: 'utf8' });
      assert.notEqual(probe.status, 0);
      assert.match(probe.stderr, /Read-only file system/, `${component}: its root file system refuses a write`);
    }
    // The replicas are pods on different nodes (anti-affinity), with their own addresses.
    const replicaPods = s.pods.filter((p) => p.namespace === 'weft-system');
    assert.deepEqual(replicaPods.map((p) => `${p.name}@${p.node}`).sort(), ['weft-control-0@node-1', 'weft-control-1@node-2']);
  });

  const client = pod(s, 'echo-1-0');
  const remote = pod(s, 'hello-2-1');
  await t.test('the installed mesh carries traffic between nodes, through the agents', async () => {
    const r = await inPod(name, client.name, ['curl', '-s', '-m', '5', `http://${remote.ip}:8080/`]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /hello from hello-2-1/);
    assert.match(r.stdout, / client=198\.18\.2\.1:/, 'the server sees its agent (node-2 bridge), not the client: the connection went through the tunnel');
    const vip = await inPod(name, client.name, ['curl', '-s', '-m', '5', 'http://198.19.0.11/']);
    assert.match(vip.stdout, /hello from hello-/, 'a Service VIP resolves through the mesh');
    // The chart's --mode auto takes eBPF here (weft check passes on this machine): with only the
    // chart's capabilities the agent can still probe and load it.
    for (const n of s.nodes) assert.equal(sample(await agentMetrics(s, n.name), 'weft_capture_mode', { mode: 'ebpf' }), 1, `agent/${n.name} captures with eBPF`);
  });

  await t.test('killing either control-plane replica breaks no connection; agents move to the other and bootstrap there', async () => {
    for (const [dead, alive] of [['control/0', 'control/1'], ['control/1', 'control/0']] as const) {
      const before = await status(name);
      // A long download across nodes, and a stream of new connections, both spanning the kill.
      const slow = clientInPod(name, remote.name, 'slow-server', { port: 9001, bytesPerSecond: 40_000 });
      t.after(() => slow.stop());
      await slow.waitFor((l) => l.event === 'listening', 10_000, 'slow server');
      const download = inPod(name, client.name, ['curl', '-s', '-m', '30', '-o', '/dev/null', '-w', '%{size_download}', `http://${remote.ip}:9001/bytes/400000`], 40_000);
      const loop = clientInPod(name, client.name, 'connection-loop', { targets: [`${remote.ip}:8080`, `${pod(s, 'echo-2-0').ip}:8080`], durationMs: 12_000, stopFile: join(dir, 'never'), parallel: 2, timeoutMs: 5_000 });
      await loop.waitFor((l) => l.event === 'progress', 10_000, 'loop running');
      const pid = before.meshProcesses[dead] ?? 0;
      process.kill(pid, 'SIGKILL');
      const result = await loop.result(30_000, 'loop result');
      assert.equal(result.failed, 0, `no new connection failed while ${dead} died: ${JSON.stringify(result.failures)}`);
      assert.ok(Number(result.ok) > 10);
      const d = await download;
      assert.equal(d.stdout, '400000', `the download spanning the kill of ${dead} got every byte (${d.stderr})`);
      slow.stop();

      // Every agent's config stream is on the surviving replica.
      const after = await status(name);
      const connected = await eventually(async () => ((await controlMetric(after, alive, 'weft_control_connected_agents')) === 2 ? true : undefined), 30_000, 500);
      assert.equal(connected, true, `both agents reconnected to ${alive}`);
      // A fresh agent (new token, new certificates) is served by the survivor alone.
      const signedBefore = await controlMetric(after, alive, 'weft_control_certificates_total');
      const restarted = await weft(['sim', 'mesh', '--name', name, 'restart', 'agent/node-2'], { timeoutMs: 120_000 });
      assert.equal(restarted.status, 0, restarted.stderr);
      const signedAfter = await controlMetric(await status(name), alive, 'weft_control_certificates_total');
      assert.ok(signedAfter > signedBefore, `${alive} signed the restarted agent's certificates (${signedBefore} -> ${signedAfter})`);
      const r = await inPod(name, client.name, ['curl', '-s', '-m', '5', `http://${remote.ip}:8080/`]);
      assert.match(r.stdout, /hello from hello-2-1/, `traffic after the agent bootstrapped on ${alive}`);
      // The killed replica comes back (as the Deployment would recreate it).
      const back = await weft(['sim', 'mesh', '--name', name, 'start', dead], { timeoutMs: 120_000 });
      assert.equal(back.status, 0, back.stderr);
    }
  });

  const clusterDir = join('/run/weft/sim', name);
  const agentLog = (node: string): string => join(clusterDir, 'logs', `agent-${node}.log`);
  const tokenFile = (node: string): string => join(clusterDir, 'install', 'pods', `weft-system.weft-agent-${node}`, 'volumes', 'token', 'token');
  const connectedTo = async (): Promise<number> => {
    const now = await status(name);
    return (await controlMetric(now, 'control/0', 'weft_control_connected_agents')) + (await controlMetric(now, 'control/1', 'weft_control_connected_agents'));
  };
  await t.test('the projected token is rotated: the agent bootstraps with the new one; an expired one is refused until the kubelet refreshes it', async () => {
    const tokens = { 'node-1': readFileSync(tokenFile('node-1'), 'utf8'), 'node-2': readFileSync(tokenFile('node-2'), 'utf8') };
    const logged = { 'node-1': statSync(agentLog('node-1')).size, 'node-2': statSync(agentLog('node-2')).size };
    const since = (node: 'node-1' | 'node-2'): string => readFileSync(agentLog(node), 'utf8').slice(logged[node]);
    // Both replicas gone: the agents serve on, and after a few failed reconnects drop their node
    // certificates to bootstrap again with their tokens (as after a CA change).
    const stopped = await weft(['sim', 'mesh', '--name', name, 'stop', 'control'], { timeoutMs: 120_000 });
    assert.equal(stopped.status, 0, stopped.stderr);
    for (const node of ['node-1', 'node-2'] as const) {
      assert.ok(await eventually(() => (since(node).includes('cannot obtain a node certificate') ? true : undefined), 30_000, 200), `${node} goes back to its token`);
    }
    // 48 minutes on (80% of the chart's 3600 s), the kubelet refreshes node-1's token; node-2's is not.
    assert.equal((await weft(['sim', 'token-clock', '--name', name, '--advance', '2880'])).status, 0);
    const synced = await weft(['sim', 'mesh', '--name', name, 'sync-volumes', 'agent/node-1']);
    assert.equal(synced.status, 0, synced.stderr);
    assert.match(synced.stdout, /synced agent\/node-1: token/);
    const rotated = readFileSync(tokenFile('node-1'), 'utf8');
    assert.notEqual(rotated, tokens['node-1'], 'a new token behind the same path');
    const volume = join(clusterDir, 'install', 'pods', 'weft-system.weft-agent-node-1', 'volumes', 'token');
    const sets = readdirSync(volume).filter((e) => e.startsWith('..') && e !== '..data');
    assert.equal(sets.length, 1, `the old set is gone once ..data points at the new (${sets.join(', ')})`);
    // The old tokens' hour is up; the control plane comes back (with fresh API tokens of its own).
    assert.equal((await weft(['sim', 'token-clock', '--name', name, '--advance', '900'])).status, 0);
    const started = await weft(['sim', 'mesh', '--name', name, 'start', 'control'], { timeoutMs: 120_000 });
    assert.equal(started.status, 0, started.stderr);
    assert.equal(await eventually(async () => ((await connectedTo()) === 1 ? true : undefined), 30_000, 500), true, 'node-1 is served with its rotated token');
    assert.ok(await eventually(() => (/bootstrap token sha256:[0-9a-f]{8} is not known to this control plane/.test(since('node-2')) ? true : undefined), 30_000, 200), 'node-2\'s expired token is refused');
    assert.equal(await connectedTo(), 1, 'node-2 stays out while its token is expired');
    // The kubelet refreshes node-2's token late: the agent, still running, reads it at its next attempt.
    assert.equal((await weft(['sim', 'mesh', '--name', name, 'sync-volumes', 'agent/node-2'])).status, 0);
    assert.notEqual(readFileSync(tokenFile('node-2'), 'utf8'), tokens['node-2']);
    assert.equal(await eventually(async () => ((await connectedTo()) === 2 ? true : undefined), 30_000, 500), true, 'node-2 is back with its refreshed token');
    const r = await inPod(name, client.name, ['curl', '-s', '-m', '5', `http://${remote.ip}:8080/`]);
    assert.match(r.stdout, /hello from hello-2-1/, 'traffic across nodes after both agents bootstrapped with rotated tokens');

    // The control plane's own API token (kube-api-access, 3607 s) is rotated too, at 80% of its
    // life: once the old ones have expired, a restarted agent's token is still reviewed.
    assert.equal((await weft(['sim', 'token-clock', '--name', name, '--advance', '2900'])).status, 0);
    const controlSynced = await weft(['sim', 'mesh', '--name', name, 'sync-volumes', 'control']);
    assert.match(controlSynced.stdout, /synced control\/0: kube-api-access\nsynced control\/1: kube-api-access/);
    assert.equal((await weft(['sim', 'token-clock', '--name', name, '--advance', '800'])).status, 0);
    const restarted = await weft(['sim', 'mesh', '--name', name, 'restart', 'agent/node-2'], { timeoutMs: 120_000 });
    assert.equal(restarted.status, 0, restarted.stderr);
    assert.equal(await eventually(async () => ((await connectedTo()) === 2 ? true : undefined), 30_000, 500), true, 'the restarted agent was reviewed and served');
    const after = await inPod(name, client.name, ['curl', '-s', '-m', '5', `http://${remote.ip}:8080/`]);
    assert.match(after.stdout, /hello from hello-2-1/);
  });

  await t.test('read-only root file systems: no component hit one, and the agent\'s state went to its declared volume', () => {
    const logs = readdirSync(join(clusterDir, 'logs')).filter((f) => /^(agent|control)-/.test(f));
    assert.ok(logs.length >= 4, logs.join(', '));
    for (const f of logs) assert.doesNotMatch(readFileSync(join(clusterDir, 'logs', f), 'utf8'), /EROFS|read-only file system/i, f);
    for (const n of s.nodes) {
      const saved = join(clusterDir, 'install', 'nodes', n.name, 'run', 'weft', 'agent', n.name, 'last-good-config.json');
      assert.equal(existsSync(saved), true, `agent/${n.name} saved its config in its state hostPath (${saved})`);
    }
  });
});
