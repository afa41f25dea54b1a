// The control plane and identity end to end, as root, on one 3-node simulated mesh shared
// by the subtests (they run in order and each leaves the cluster healthy for the next):
// live manifest changes reach every agent (and how fast), a malformed manifest keeps the
// last good version, agents ride out a stopped or killed control plane and resync, an agent
// started without a control plane waits and then syncs, the CA signs only for service
// accounts on the asking node, and the certificates agents hold and serve are the right
// ones. Plus `weft vet` run as a CLI.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName, weft, WEFT, type SimStatus } from '../support/sim.ts';
import { serverNameFor } from '../../src/proxy/server-name.ts';

const REPO = join(import.meta.dirname, '..', '..');
const TD = 'cluster.local';
const HOUR = 3_600_000;
/** The CA backdates notBefore by its clock skew (5 min) on top of the 24 h lifetime. */
const LIFETIME_MS = 24 * HOUR + 5 * 60_000;
/** Changes timed by the propagation subtest (the benchmark does 100). */
const CHANGES = Number(process.env.WEFT_CONTROL_TEST_CHANGES ?? 20);

// node-1 and node-3 run only `web`; node-2 also runs `solo`, the service account the CA must
// refuse to node-1.
const APP = `apiVersion: v1
kind: Namespace
metadata: {name: ctl, labels: {weft.dev/mesh: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: ctl}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: solo, namespace: ctl}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ctl}
spec:
  clusterIP: 198.19.0.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
${[['web-1', 'node-1', 'web'], ['web-2', 'node-2', 'web'], ['solo-2', 'node-2', 'solo'], ['web-3', 'node-3', 'web']].map(([pod, node, sa]) => `---
apiVersion: v1
kind: Pod
metadata: {name: ${pod}, namespace: ctl, labels: {app: ${sa}}}
spec:
  nodeName: ${node}
  serviceAccountName: ${sa}
  containers: [{name: app, image: weft/echo, ports: [{containerPort: 8080}]}]
`).join('')}`;

/** The Service the subtests change: its port says which change an agent holds. */
function bumpService(port: number | string, extra = ''): string {
  return `apiVersion: v1
kind: Service
metadata: {name: bump, namespace: ctl}
spec:
  clusterIP: 198.19.0.20
  selector: {app: web}
  ports: [{name: http, port: ${port}, targetPort: 8080}]
${extra}`;
}

const FRESH_SERVICE = `---
apiVersion: v1
kind: Service
metadata: {name: fresh, namespace: ctl}
spec:
  clusterIP: 198.19.0.21
  selector: {app: solo}
  ports: [{name: http, port: 81, targetPort: 8080}]
`;

interface Run {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(cmd: string, args: readonly string[], timeoutMs = 15_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ status: code, stdout, stderr });
    });
  });
}

interface CertificateEntry {
  readonly identity: string;
  readonly serial: string | undefined;
  readonly notBefore: string | undefined;
  readonly notAfter: string | undefined;
  readonly nextAttempt: string | undefined;
}

interface ConfigDump {
  readonly node: string;
  readonly version: string | undefined;
  readonly feed: {
    readonly synced: boolean;
    readonly connected: boolean;
    readonly lastError?: string;
    readonly rejected: readonly { key: string; message: string }[];
  };
  readonly certificates: readonly CertificateEntry[];
  readonly mesh?: {
    readonly services: readonly { key: string; vip: string; ports: readonly { port: number }[] }[];
    readonly workloads: readonly { key: string }[];
  };
}

async function waitFor<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs: number, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err: unknown) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${last instanceof Error ? last.message : JSON.stringify(last)}`}`);
    await sleep(everyMs);
  }
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

/** The simulated cluster as the subtests see it. */
class Cluster {
  readonly name: string;
  readonly status: SimStatus;
  readonly dir: string;

  constructor(name: string, status: SimStatus) {
    this.name = name;
    this.status = status;
    this.dir = `/run/weft/sim/${name}`;
  }

  get nodes(): readonly string[] {
    return this.status.nodes.map((n) => n.name);
  }

  netns(node: string): string {
    const n = this.status.nodes.find((x) => x.name === node);
    assert.ok(n, `node ${node}`);
    return `/run/netns/${n.netns}`;
  }

  inNode(node: string, cmd: string, args: readonly string[], timeoutMs?: number): Promise<Run> {
    return run('nsenter', [`--net=${this.netns(node)}`, cmd, ...args], timeoutMs);
  }

  async dump(node: string): Promise<ConfigDump> {
    const r = await this.inNode(node, 'curl', ['-sf', '-m', '3', 'http://127.0.0.1:15000/config_dump']);
    if (r.status !== 0) throw new Error(`config_dump of ${node}: curl exit ${r.status} ${r.stderr}`);
    return JSON.parse(r.stdout) as ConfigDump;
  }

  dumps(): Promise<ConfigDump[]> {
    return Promise.all(this.nodes.map((n) => this.dump(n)));
  }

  async readiness(node: string): Promise<{ code: string; body: string }> {
    const r = await this.inNode(node, 'curl', ['-s', '-m', '3', '-w', '\n%{http_code}', 'http://127.0.0.1:15021/healthz/ready']);
    const lines = r.stdout.trimEnd().split('\n');
    return { code: lines.pop() ?? '', body: lines.join('\n') };
  }

  /** Replaces a manifest atomically (a hidden temporary file is ignored by the control plane); returns when. */
  writeManifest(file: string, text: string): number {
    const tmp = join(this.dir, 'manifests', `.tmp-${file}`);
    writeFileSync(tmp, text);
    const at = Date.now();
    renameSync(tmp, join(this.dir, 'manifests', file));
    return at;
  }

  log(file: string): Record<string, unknown>[] {
    return readFileSync(join(this.dir, 'logs', file), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** When the agent logged that it applied config `version` (pino's ms timestamp). */
  appliedAt(node: string, version: string): number | undefined {
    const line = this.log(`agent-${node}.log`).find((l) => l.msg === 'config applied' && l.version === version);
    return typeof line?.time === 'number' ? line.time : undefined;
  }

  async mesh(verb: 'start' | 'stop' | 'restart', component: string, flags: readonly string[] = []): Promise<void> {
    const r = await weft(['sim', 'mesh', '--name', this.name, verb, component, ...flags], { timeoutMs: 90_000 });
    assert.equal(r.status, 0, `sim mesh ${verb} ${component} ${flags.join(' ')}: ${r.stderr}`);
  }

  /** Resolves once every agent holds `bump` on `port`; returns each agent's dump. */
  allHold(port: number, timeoutMs: number): Promise<ConfigDump[]> {
    return waitFor(async () => {
      const ds = await this.dumps();
      return ds.every((d) => bumpPort(d) === port) ? ds : undefined;
    }, `every agent to hold ctl/bump on port ${port}`, timeoutMs, 0);
  }

  /** GETs each URL in turn from a pod; returns the answers, one per URL. */
  async curls(from: string, urls: readonly string[]): Promise<string[]> {
    const script = `set -e; ${urls.map((u) => `curl -sf -m 5 ${u}; echo`).join('; ')}`;
    const r = await inPod(this.name, from, ['sh', '-c', script], 60_000);
    assert.equal(r.status, 0, `curl from ${from} (${urls.join(' ')}): exit ${r.status} ${r.stderr}\n${r.stdout}`);
    const answers = r.stdout.split('\n').filter((l) => l !== '');
    assert.equal(answers.length, urls.length, r.stdout);
    return answers;
  }
}

function bumpPort(d: ConfigDump): number | undefined {
  return d.mesh?.services.find((s) => s.key === 'ctl/bump')?.ports[0]?.port;
}

function hasService(d: ConfigDump, key: string): boolean {
  return d.mesh?.services.some((s) => s.key === key) ?? false;
}

/** Cross-node traffic through the mesh: the echo server sees its own node's bridge as the client. */
async function meshWorks(c: Cluster): Promise<void> {
  // One `sim exec` per source pod (each costs a CLI start); `set -e` fails on the first failed curl.
  // The VIP's port is `http`, so requests are balanced by peak-EWMA latency over two random
  // picks: once the agent has timed them, the local web-1 wins every pair it is in, and a
  // remote pod gets a request only when both picks are remote (1 in 3). Six requests all went
  // to web-1 in one CI run ((2/3)^6 = 9%); with 24 that is (2/3)^24 < 0.01%.
  const fromWeb1 = await c.curls('web-1', ['http://198.18.3.10:8080/', ...Array.from({ length: 24 }, () => 'http://198.19.0.10/')]);
  assert.match(fromWeb1[0] ?? '', /hello from web-3 ns=ctl node=node-3 client=198\.18\.3\.1:/, 'web-1 -> web-3 (pod IP) through the tunnel');
  const seen = new Set<string>();
  for (const viaVip of fromWeb1.slice(1)) {
    const m = /hello from (web-\d) ns=ctl node=(node-\d) client=198\.18\.(\d)\.1:/.exec(viaVip);
    assert.ok(m, `VIP answer ${viaVip}`);
    assert.equal(m[2], `node-${m[3]}`, 'the destination agent connected to the pod');
    seen.add(m[1] ?? '');
  }
  assert.ok(seen.size >= 2, `the VIP spreads over endpoints: ${[...seen].join(', ')}`);
  const [toSolo] = await c.curls('web-3', ['http://198.18.2.11:8080/']);
  assert.match(toSolo ?? '', /hello from solo-2 ns=ctl node=node-2 client=198\.18\.2\.1:/, 'web-3 -> solo-2 (pod IP) through the tunnel');
}

/** The probe run inside a node's netns: bootstraps a ControlClient as that node and asks to sign CSRs. */
const PROBE = `
import { readFileSync } from 'node:fs';
import { ControlClient } from ${JSON.stringify(join(REPO, 'src/control/client.ts'))};
import { validateAgentResource } from ${JSON.stringify(join(REPO, 'src/app/control.ts'))};
import { createWorkloadCsr, parseSpiffeId } from ${JSON.stringify(join(REPO, 'src/identity/index.ts'))};
const [mode, address, node, tokenFile, caFile, ...identities] = process.argv.slice(2);
const client = new ControlClient({
  address, node, trustDomain: ${JSON.stringify(TD)}, validate: validateAgentResource,
  trustBundlePem: readFileSync(caFile, 'utf8'), bootstrapToken: () => readFileSync(tokenFile, 'utf8'),
});
client.start();
// 'refused': stop at the first failed bootstrap instead of retrying for the whole deadline.
const refused = new Promise((r) => {
  const poll = setInterval(() => { if (mode === 'refused' && client.configDump().lastError !== undefined) { clearInterval(poll); r(false); } }, 50);
  setTimeout(() => { clearInterval(poll); r(false); }, 10000);
});
const synced = await Promise.race([client.whenSynced().then(() => true), refused]);
const results = [];
for (const uri of synced ? identities : []) {
  const { csrPem } = await createWorkloadCsr(parseSpiffeId(uri));
  try {
    const r = await client.sign(csrPem, uri);
    results.push({ uri, certPem: r.certPem });
  } catch (err) {
    results.push({ uri, code: err.code, message: err.message });
  }
}
const dump = client.configDump();
await client.close();
process.stdout.write(JSON.stringify({ synced, lastError: dump.lastError, resources: dump.resources.length, results }));
process.exit(0);
`;

interface ProbeResult {
  readonly synced: boolean;
  readonly lastError: string | undefined;
  readonly resources: number;
  readonly results: readonly { uri: string; certPem?: string; code?: string; message?: string }[];
}

function sanUris(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

function assertLifetime(notBefore: number, notAfter: number, what: string): void {
  const life = notAfter - notBefore;
  assert.ok(Math.abs(life - LIFETIME_MS) <= 60_000, `${what}: lifetime ${(life / HOUR).toFixed(3)} h, want 24 h + 5 min skew`);
  assert.ok(notBefore <= Date.now() && Date.now() < notAfter, `${what} is valid now`);
}

test('control plane and identity on a 3-node mesh', async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'openssl'])) return;
  const work = mkdtempSync(join(tmpdir(), 'weft-control-test-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  writeFileSync(join(work, 'app.yaml'), APP);
  const name = uniqueName('ctl');
  const status = await simCluster(t, name, ['--nodes', '3', '--pods-per-node', '2', '--manifests', work]);
  const c = new Cluster(name, status);
  assert.deepEqual(c.nodes, ['node-1', 'node-2', 'node-3']);
  const caPem = readFileSync(join(c.dir, 'mesh', 'ca', 'ca.crt'), 'utf8');
  const ca = new X509Certificate(caPem);
  let port = 10_000;

  await t.test(`a manifest change reaches every agent (${CHANGES} changes, timed)`, async () => {
    const observed: number[] = [];
    const applied: number[] = [];
    for (let i = 1; i <= CHANGES; i++) {
      port = 10_000 + i;
      const at = c.writeManifest('50-bump.yaml', bumpService(port));
      const ds = await c.allHold(port, 10_000);
      observed.push(Date.now() - at);
      // The agents' own log says when each applied it; the slowest one counts.
      const times = ds.map((d) => {
        assert.ok(d.version !== undefined);
        const when = c.appliedAt(d.node, d.version);
        assert.ok(when !== undefined, `${d.node} logged applying version ${d.version}`);
        assert.ok(when >= at - 5, `${d.node} applied version ${d.version} after the change was written`);
        return when - at;
      });
      applied.push(Math.max(...times));
      for (const d of ds) {
        assert.equal(d.feed.synced && d.feed.connected, true, `${d.node} is connected`);
        assert.deepEqual(d.feed.rejected, [], `${d.node} refused nothing`);
      }
    }
    const line = (xs: number[]): string => `median ${median(xs).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`;
    process.stdout.write(`# manifest change -> all 3 agents applied (agent logs): ${line(applied)} over ${CHANGES} changes\n`);
    process.stdout.write(`# manifest change -> seen in every /config_dump (polled): ${line(observed)}\n`);
  });

  await t.test('a malformed manifest: clear problem in control.log, last good version kept, the rest of the file applies', async () => {
    const good = port;
    const before = c.log('control.log').length;
    // One bad object (port out of range) beside a new good one, in the same file.
    const badPort = bumpService(70_000, FRESH_SERVICE);
    c.writeManifest('50-bump.yaml', badPort);
    const ds = await waitFor(async () => {
      const all = await c.dumps();
      return all.every((d) => hasService(d, 'ctl/fresh')) ? all : undefined;
    }, 'ctl/fresh on every agent', 10_000);
    for (const d of ds) {
      assert.equal(bumpPort(d), good, `${d.node} keeps the last good ctl/bump`);
      assert.deepEqual(d.feed.rejected, [], `${d.node}: the control plane filtered the bad object, nothing reached an agent to NACK`);
    }
    const problem = await waitFor(() => c.log('control.log').slice(before).map((l) => l.problem).find((p): p is string => typeof p === 'string'), 'a manifest problem in control.log', 5_000);
    assert.match(problem, /50-bump\.yaml: Service\/ctl\/bump: spec\.ports\[0\]\.port: .*70000/);
    assert.match(problem, /keeping the previous version of this object/);

    // A file that no longer parses keeps all its last good objects.
    const mark = c.log('control.log').length;
    c.writeManifest('50-bump.yaml', `${bumpService(port + 1)}  selector: [unclosed\n`);
    const yamlProblem = await waitFor(() => c.log('control.log').slice(mark).map((l) => l.problem).find((p): p is string => typeof p === 'string'), 'a YAML problem in control.log', 5_000);
    assert.match(yamlProblem, /50-bump\.yaml:\d+:\d+: document 1: invalid YAML/);
    assert.match(yamlProblem, /keeping this file's last good objects/);
    await sleep(500);
    for (const d of await c.dumps()) {
      assert.equal(bumpPort(d), good, `${d.node} still holds the last good ctl/bump`);
      assert.ok(hasService(d, 'ctl/fresh'), `${d.node} still holds ctl/fresh`);
    }

    // Fixed: the new version goes out; the removed object goes away.
    port = 20_000;
    c.writeManifest('50-bump.yaml', bumpService(port));
    const fixed = await c.allHold(port, 10_000);
    for (const d of fixed) assert.equal(hasService(d, 'ctl/fresh'), false, `${d.node} dropped ctl/fresh`);
  });

  await t.test('the CA signs only for service accounts on the asking node (real ControlClient bootstrapped with node-1\'s token)', async () => {
    const probe = join(work, 'probe.mjs');
    writeFileSync(probe, PROBE);
    const mesh = join(c.dir, 'mesh');
    const ask = async (mode: 'sync' | 'refused', node: string, tokenOf: string, ids: readonly string[]): Promise<ProbeResult> => {
      const r = await c.inNode('node-1', process.execPath, [probe, mode, '198.18.0.2:15010', node, join(mesh, tokenOf, 'token'), join(mesh, 'ca', 'ca.crt'), ...ids], 30_000);
      assert.equal(r.status, 0, `probe: ${r.stderr}`);
      return JSON.parse(r.stdout) as ProbeResult;
    };
    const web = `spiffe://${TD}/ns/ctl/sa/web`;
    const solo = `spiffe://${TD}/ns/ctl/sa/solo`;
    const asNode1 = await ask('sync', 'node-1', 'node-1', [solo, web]);
    assert.equal(asNode1.synced, true, `node-1 bootstrapped: ${asNode1.lastError}`);
    assert.ok(asNode1.resources > 0);
    const [refused, signed] = asNode1.results;
    assert.equal(refused?.uri, solo);
    assert.equal(refused.certPem, undefined);
    assert.equal(refused.code, 'WEFT_IDENTITY_NOT_ON_NODE', `refusal: ${refused.code} ${refused.message}`);
    assert.match(refused.message ?? '', /node node-1 asked for spiffe:\/\/cluster\.local\/ns\/ctl\/sa\/solo, but no pod with service account ctl\/solo is scheduled on it/);
    assert.equal(signed?.uri, web);
    assert.ok(signed.certPem !== undefined, `web signed: ${signed.code} ${signed.message}`);
    const cert = new X509Certificate(signed.certPem);
    assert.deepEqual(sanUris(cert), [web]);
    assert.equal(cert.verify(ca.publicKey), true, 'signed by the mesh CA');
    assertLifetime(cert.validFromDate.getTime(), cert.validToDate.getTime(), 'the workload certificate');

    // node-1's token does not make anyone node-2.
    const impostor = await ask('refused', 'node-2', 'node-1', [solo]);
    assert.equal(impostor.synced, false);
    assert.deepEqual(impostor.results, []);
    assert.match(impostor.lastError ?? '', /WEFT_CONTROL_WRONG_NODE: bootstrap: the credential presented belongs to node node-1, not to node node-2/);
  });

  await t.test('agents hold 24 h certificates for their own service accounts, renew at half-life, and serve them by SNI', async () => {
    const ds = await c.dumps();
    const want: Record<string, string[]> = { 'node-1': ['web'], 'node-2': ['solo', 'web'], 'node-3': ['web'] };
    for (const d of ds) {
      assert.deepEqual(d.certificates.map((x) => x.identity).sort(), (want[d.node] ?? []).map((sa) => `spiffe://${TD}/ns/ctl/sa/${sa}`), `${d.node}'s identities`);
      for (const x of d.certificates) {
        const nb = Date.parse(x.notBefore ?? '');
        const na = Date.parse(x.notAfter ?? '');
        assertLifetime(nb, na, `${d.node} ${x.identity}`);
        const next = Date.parse(x.nextAttempt ?? '');
        const at = (next - nb) / (na - nb);
        assert.ok(at > 0.4 && at < 0.6, `${d.node} ${x.identity} renews at ${at.toFixed(3)} of its lifetime`);
      }
    }
    // node-2's tunnel port presents the certificate of the identity the SNI asks for.
    const node2 = ds.find((d) => d.node === 'node-2');
    assert.ok(node2);
    for (const sa of ['solo', 'web']) {
      const id = `spiffe://${TD}/ns/ctl/sa/${sa}`;
      const r = await c.inNode('node-1', 'openssl', ['s_client', '-connect', '198.18.0.12:15008', '-servername', serverNameFor(id), '-alpn', 'h2', '-tls1_3', '-showcerts'], 15_000);
      const pem = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/.exec(r.stdout)?.[0];
      assert.ok(pem, `node-2 served a certificate for ${sa}: ${r.stderr.slice(0, 300)}`);
      const served = new X509Certificate(pem);
      assert.deepEqual(sanUris(served), [id]);
      assert.equal(served.verify(ca.publicKey), true);
      assert.equal(served.serialNumber.toLowerCase().replace(/^0+/, ''), node2.certificates.find((x) => x.identity === id)?.serial, 'the one in /config_dump');
      assertLifetime(served.validFromDate.getTime(), served.validToDate.getTime(), `served ${sa}`);
    }
    // An identity with no pod on node-2 gets no certificate at all.
    const ghost = await c.inNode('node-1', 'openssl', ['s_client', '-connect', '198.18.0.12:15008', '-servername', serverNameFor(`spiffe://${TD}/ns/ctl/sa/ghost`), '-alpn', 'h2', '-tls1_3'], 15_000);
    assert.doesNotMatch(ghost.stdout, /BEGIN CERTIFICATE/);
    assert.match(ghost.stdout, /no peer certificate available/);
  });

  for (const kill of [false, true]) {
    const how = kill ? 'killed (SIGKILL)' : 'stopped (SIGTERM)';
    await t.test(`control plane ${how}: agents keep serving their config; when it returns they resync a change made meanwhile`, async () => {
      await c.mesh('stop', 'control', kill ? ['--kill'] : []);
      // What each agent holds once the control plane is gone (a push in flight at the stop may
      // still have landed), against what it serves a while later.
      const before = await waitFor(async () => {
        const ds = await c.dumps();
        return ds.every((d) => !d.feed.connected) ? ds : undefined;
      }, 'every agent to notice the control plane is gone', 30_000, 100);
      await meshWorks(c);
      const during = await c.dumps();
      for (const [i, d] of during.entries()) {
        assert.equal(d.version, before[i]?.version, `${d.node} serves the same config version`);
        assert.deepEqual(d.mesh, before[i]?.mesh, `${d.node} serves the same mesh`);
        assert.equal(d.feed.synced, true);
      }

      port += 1;
      c.writeManifest('50-bump.yaml', bumpService(port));
      await sleep(500);
      for (const d of await c.dumps()) assert.equal(bumpPort(d), port - 1, `${d.node}: nobody pushes while the control plane is down`);

      const started = Date.now();
      await c.mesh('start', 'control');
      const ready = Date.now();
      const resynced = await c.allHold(port, 30_000);
      process.stdout.write(`# control plane ${how} -> back: ready ${ready - started} ms after start, agents resynced ${Date.now() - ready} ms after ready\n`);
      for (const d of resynced) assert.equal(d.feed.connected, true);
      await meshWorks(c);
    });
  }

  await t.test('an agent restarted while the control plane is down serves the last good config from disk, says so, then syncs', async () => {
    const before = await c.dump('node-2');
    const saved = join(c.dir, 'mesh', 'node-2', 'last-good-config.json');
    assert.equal(statSync(saved).mode & 0o777, 0o600, 'the saved config (it holds private keys) is readable by its owner only');
    await c.mesh('stop', 'control');
    await c.mesh('stop', 'agent/node-2');
    port += 1;
    c.writeManifest('50-bump.yaml', bumpService(port));
    // `start` returns once the agent is ready: with the config on disk it does not wait for the control plane.
    await c.mesh('start', 'agent/node-2');
    const d = await c.dump('node-2');
    assert.equal(d.feed.connected, false, 'the control plane is still down');
    assert.equal(d.version, before.version, 'the last good version, from disk');
    assert.deepEqual(d.mesh, before.mesh);
    assert.deepEqual(d.certificates.map((x) => x.identity).sort(), before.certificates.map((x) => x.identity).sort(), 'its certificates, from disk');
    const r = await c.readiness('node-2');
    assert.equal(r.code, '200', r.body);
    assert.match(r.body.trim(), /^ready: serving the last good config saved .* the control plane has not answered since this agent started$/);
    const metrics = await c.inNode('node-2', 'curl', ['-sf', '-m', '3', 'http://127.0.0.1:15020/metrics']);
    assert.match(metrics.stdout, /^weft_agent_config_source\{source="disk"\} 1$/m);
    await meshWorks(c);

    await c.mesh('start', 'control');
    const ds = await c.allHold(port, 30_000);
    assert.ok(ds.find((x) => x.node === 'node-2')?.feed.connected);
    const after = await c.readiness('node-2');
    assert.equal(after.body.trim(), 'ready', 'no longer from disk');
    const m2 = await c.inNode('node-2', 'curl', ['-sf', '-m', '3', 'http://127.0.0.1:15020/metrics']);
    assert.match(m2.stdout, /^weft_agent_config_source\{source="control"\} 1$/m);
  });

  await t.test('an agent started with no saved config while the control plane is down waits, then syncs when it returns', async () => {
    await c.mesh('stop', 'control');
    await c.mesh('stop', 'agent/node-2');
    rmSync(join(c.dir, 'mesh', 'node-2', 'last-good-config.json'));
    port += 1;
    c.writeManifest('50-bump.yaml', bumpService(port));
    // `start` returns only once the agent is ready, which needs config: run it in the background.
    const starting = weft(['sim', 'mesh', '--name', name, 'start', 'agent/node-2'], { timeoutMs: 90_000 });
    let startDone = false;
    void starting.then(() => { startDone = true; });
    const waiting = await waitFor(async () => {
      const d = await c.dump('node-2');
      return d.feed.lastError !== undefined ? d : undefined;
    }, 'the new node-2 agent to answer on its admin port and report a failed connect', 20_000, 100);
    assert.equal(waiting.feed.synced, false);
    assert.equal(waiting.feed.connected, false);
    assert.equal(waiting.version, undefined);
    assert.deepEqual(waiting.certificates, []);
    const r = await c.readiness('node-2');
    assert.equal(r.code, '503', `not ready: ${r.body}`);
    assert.match(r.body, /no config from the control plane yet/);
    await sleep(2_000);
    assert.equal(startDone, false, '`sim mesh start agent/node-2` still waits for readiness');

    await c.mesh('start', 'control');
    const started = await starting;
    assert.equal(started.status, 0, `start agent/node-2: ${started.stderr}`);
    const ds = await c.allHold(port, 30_000);
    const node2 = ds.find((d) => d.node === 'node-2');
    assert.ok(node2?.feed.synced && node2.feed.connected);
    assert.deepEqual(node2.certificates.map((x) => x.identity).sort(), [`spiffe://${TD}/ns/ctl/sa/solo`, `spiffe://${TD}/ns/ctl/sa/web`]);
    assert.equal((await c.readiness('node-2')).code, '200');
    await meshWorks(c);
  });
});

test('weft vet on a directory with 5 distinct mistakes reports all 5 with file, object and field (exit 1)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-vet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'a-namespace.yaml'), `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {weft.dev/mesh: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec:
  serviceAccountName: web
  containers: [{name: app, image: web, ports: [{containerPort: 70000}]}]
`);
  writeFileSync(join(dir, 'b-services.yaml'), `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 198.19.0.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: 198.19.0.300
  selector: {app: db}
  ports: [{port: 5432}]
`);
  writeFileSync(join(dir, 'c-policy.yaml'), `apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-get, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - to: [{operation: {methods: [GET]}}]
    when: [{key: 'request.auth.claims[iss]', values: [issuer]}]
`);
  writeFileSync(join(dir, 'd-deploy.yaml'), `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec: {replicas: 2}
`);
  const r = await run(WEFT, ['vet', dir], 60_000);
  assert.equal(r.status, 1, `exit 1 on problems: ${r.stdout}${r.stderr}`);
  const lines = r.stdout.trimEnd().split('\n');
  const summary = lines.pop() ?? '';
  const expected: readonly RegExp[] = [
    /a-namespace\.yaml: Pod\/shop\/web-1: spec\.containers\[0\]\.ports\[0\]\.containerPort: .*70000/,
    /b-services\.yaml: Service\/shop\/web: spec\.ports\[0\]\.protocol: .*UDP/,
    /b-services\.yaml: Service\/shop\/db: spec\.clusterIP: .*198\.19\.0\.300/,
    /c-policy\.yaml: AuthorizationPolicy\/shop\/web-get: spec\.rules\[0\]\.when\[0\]\.key: .*JWT/,
    /d-deploy\.yaml: Deployment\/shop\/web: kind: unknown kind "Deployment"/,
  ];
  for (const re of expected) assert.equal(lines.filter((l) => re.test(l)).length, 1, `one line matches ${re}:\n${r.stdout}`);
  assert.equal(lines.length, expected.length, `exactly 5 problems:\n${r.stdout}`);
  assert.match(summary, /^weft vet: 5 problems in 4 files \(/);
});
