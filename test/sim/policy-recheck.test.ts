// Live policy re-check at scale (issue 9, point 4), end to end on a 3-node simulated mesh:
// 10,000 TCP connections held open through the tunnel into one echo server on node-2 (so
// node-2's agent holds all 10,000; node-1's and node-3's hold 5,000 each), from 8 client pods
// (4 running as `web`, 4 as `batch`), every connection sending and getting back 8 bytes
// every 2 s. An AuthorizationPolicy that lets only `web` in arrives: the agents judge their
// open connections again, and the 5,000 batch connections are reset within a second of an
// agent applying that config, while every web connection keeps answering.
// The agents' descriptor caps shape the layout: this machine's RLIMIT_NOFILE is 20,000 (hard;
// the agent raises its soft limit to it), so an agent's budget holds 18,050 connection
// descriptors, 2 per outbound connection (src/app/fd-budget.ts): ~9,000 outbound connections
// at one agent, and one source may hold a quarter (1,128 connections per worker); hence two
// client nodes and 1,250 connections per client pod.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { simCluster, uniqueName } from '../support/sim.ts';
import { defaultManifests } from '../../src/sim/defaults.ts';
import { startInPod, until, type InPod } from './capture-support.ts';
import { accessLines, agentLog, fileSize, pod } from './mesh-support.ts';

const PER_POD = 1250;
const CLIENTS = ['web-1a', 'web-1b', 'web-3a', 'web-3b', 'batch-1a', 'batch-1b', 'batch-3a', 'batch-3b'];
const PER_CLIENT = PER_POD * CLIENTS.length / 2; // per identity
const SINK = '198.19.0.210';
const PORT = 9100;
const HOLDER = join(import.meta.dirname, 'many-holder.py');
const ECHO = join(import.meta.dirname, 'many-echo.py');

const MANIFESTS = `apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: demo}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: batch, namespace: demo}
---
apiVersion: v1
kind: Service
metadata: {name: sink, namespace: demo}
spec:
  clusterIP: ${SINK}
  selector: {app: sink}
  ports: [{name: tcp-sink, port: ${PORT}, targetPort: ${PORT}, protocol: TCP, appProtocol: tcp}]
---
apiVersion: v1
kind: Pod
metadata: {name: sink-2, namespace: demo, labels: {app: sink}}
spec:
  nodeName: node-2
  serviceAccountName: echo
  containers: [{name: app, image: weft/echo, ports: [{containerPort: ${PORT}}]}]
`;

const clientPod = (pod: string): string => `---
apiVersion: v1
kind: Pod
metadata: {name: ${pod}, namespace: demo, labels: {app: ${pod.replace(/-.*/, '')}}}
spec:
  nodeName: node-${pod.slice(-2, -1)}
  serviceAccountName: ${pod.replace(/-.*/, '')}
  containers: [{name: app, image: weft/echo, ports: [{containerPort: 8080}]}]
`;

const ONLY_WEB = `apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: only-web, namespace: demo}
spec:
  selector: {matchLabels: {app: sink}}
  action: ALLOW
  rules: [{from: [{source: {principals: ['cluster.local/ns/demo/sa/web']}}]}]
`;

interface Tick {
  event: string; t?: number; n?: number; failed?: number; open?: number; closed?: number; reasons?: Record<string, number>;
  firstClose?: number | null; lastClose?: number | null; oldestAnswer?: number | null; waiting?: number;
}

const ticks = (h: InPod): Tick[] => h.lines.map((l) => JSON.parse(l) as Tick);
const last = (h: InPod): Tick | undefined => ticks(h).filter((e) => e.event === 'tick').at(-1);

/** Wall-clock times (ms) of the agent's log lines with this message, after byte `from`. */
function logTimes(path: string, from: number, msg: string): { time: number; line: Record<string, unknown> }[] {
  return readFileSync(path).subarray(from).toString().split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .map((line) => ({ time: Number(line.time), line }));
}

test('10,000 open connections, a policy change that denies half: that half is reset within a second, the other half keeps transferring', { timeout: 420_000 }, async (t) => {
  if (!needsRoot(t, ['python3', 'nsenter'])) return;
  const name = uniqueName('pr');
  const dir = mkdtempSync(join(tmpdir(), 'weft-recheck-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of defaultManifests(3, 1)) writeFileSync(join(dir, f.path), f.text);
  writeFileSync(join(dir, 'recheck.yaml'), MANIFESTS + CLIENTS.map(clientPod).join(''));
  const s = await simCluster(t, name, ['--nodes', '3', '--manifests', dir]);
  const logs = ['node-1', 'node-2', 'node-3'].map((n) => agentLog(name, n));
  const budget = logTimes(logs[1] ?? '', 0, 'file descriptor budget')[0]?.line;
  t.diagnostic(`node-2's descriptor budget: ${JSON.stringify(budget)}`);
  assert.ok(Number(budget?.connectionFds) >= 2 * PER_CLIENT, 'node-2\'s agent may hold 10,000 tunnelled connections');

  const server = startInPod(pod(s, 'sink-2'), ['python3', ECHO, String(PORT), '400']);
  t.after(() => server.stop());
  await server.waitLine(/"listening"/, 20_000);
  // One client pod after the other, so that the tunnel sessions (100 streams each) are not
  // all dialled at once: their handshakes have a per-source cap of their own.
  const holders = new Map<string, InPod>();
  for (const client of CLIENTS) {
    const h = startInPod(pod(s, client), ['python3', HOLDER, SINK, String(PORT), String(PER_POD), '300']);
    t.after(() => h.stop());
    holders.set(client, h);
    const open = JSON.parse(await h.waitLine(/"event": "open"/, 120_000)) as Tick;
    t.diagnostic(`${client}: ${JSON.stringify(open)}`);
    assert.equal(open.n, PER_POD, `all ${PER_POD} connections of ${client} open and answering`);
    assert.equal(open.failed, 0);
  }
  const web = [...holders].filter(([c]) => c.startsWith('web')).map(([, h]) => h);
  const batch = [...holders].filter(([c]) => c.startsWith('batch')).map(([, h]) => h);
  // All keep transferring: a full cycle (every connection answered) before the change.
  const before = Date.now() / 1000;
  await until('every connection to answer once more before the change', 30_000, () =>
    ([...holders.values()].every((h) => (last(h)?.oldestAnswer ?? 0) > before) ? true : undefined));

  const from = logs.map(fileSize);
  const written = Date.now();
  writeFileSync(join('/run/weft/sim', name, 'manifests', 'only-web.yaml'), ONLY_WEB);

  await t.test('the 5,000 batch connections are reset within a second of an agent applying the policy', async () => {
    const done = await until('every batch connection to be closed', 60_000, () => {
      const ticks = batch.map(last);
      return ticks.every((k) => k?.closed === PER_POD) ? ticks.filter((k) => k !== undefined) : undefined;
    });
    // The control plane sends an agent a new config only when its node's slice changed.
    const appliedBy = logs.map((l, i) => logTimes(l, from[i] ?? 0, 'config applied').map((a) => a.time - written));
    t.diagnostic(`config applied, ms after the policy was written: ${appliedBy.map((a, i) => `node-${i + 1} [${a.join(', ')}]`).join('; ')}`);
    const applied = appliedBy.flat().map((ms) => ms + written);
    assert.ok((appliedBy[1] ?? []).length >= 1, 'node-2 (the destination) applied the new config');
    const firstApplied = Math.min(...applied);
    const lastClose = Math.max(...done.map((k) => k.lastClose ?? 0)) * 1000;
    const firstClose = Math.min(...done.map((k) => k.firstClose ?? Infinity)) * 1000;
    const reasons = [...new Set(done.flatMap((k) => Object.keys(k.reasons ?? {})))];
    t.diagnostic(`policy written → first agent applied: ${firstApplied - written} ms (last: ${Math.max(...applied) - written} ms); first applied → first reset seen by a client: ${Math.round(firstClose - firstApplied)} ms, → last: ${Math.round(lastClose - firstApplied)} ms; how: ${reasons.join(', ')}`);
    t.diagnostic(`per batch pod, resets seen from..to (ms after the first apply): ${done.map((k) => `${Math.round((k.firstClose ?? 0) * 1000 - firstApplied)}..${Math.round((k.lastClose ?? 0) * 1000 - firstApplied)}`).join(', ')}`);
    const workers = logs.flatMap((l, i) => logTimes(l, from[i] ?? 0, 'closed open connections the new policy no longer allows'));
    const closed = workers.reduce((n, w) => n + Number(w.line.connections), 0);
    t.diagnostic(`workers that closed connections: ${workers.map((w) => `${String(w.line.connections)} at +${w.time - firstApplied} ms`).join(', ')}`);
    assert.ok(lastClose - firstApplied < 1000, `all ${PER_CLIENT} closed within a second of the first agent applying the config (${Math.round(lastClose - firstApplied)} ms)`);
    assert.deepEqual(reasons, ['ECONNRESET'], 'reset, not a clean end');
    assert.ok(closed >= PER_CLIENT, `the agents' workers say they closed them (${closed}, both sides counted)`);
    const denied = await until('the access log to name the policy', 20_000, () => {
      // Whichever agent re-checks first resets the connection; the other may see a reset peer.
      const lines = logs.flatMap((l, i) => accessLines(l, from[i] ?? 0)).filter((l) => l.flags === 'DENY');
      return lines.length >= PER_CLIENT ? lines : undefined;
    });
    assert.match(denied[0]?.detail ?? '', /^closed by a policy change: no rule of the 1 ALLOW policy/);
    assert.ok(denied.every((l) => l.src.identity?.endsWith('/sa/batch')), 'only batch connections were denied');
  });

  await t.test('the 5,000 web connections keep transferring', async () => {
    const after = Date.now() / 1000;
    const ticks = await until('every web connection to answer again after the change', 30_000, () => {
      const l = web.map(last);
      return l.every((k) => (k?.oldestAnswer ?? 0) > after) ? l.filter((k) => k !== undefined) : undefined;
    });
    t.diagnostic(`web after the change: ${JSON.stringify(ticks)}`);
    for (const tick of ticks) {
      assert.equal(tick.open, PER_POD);
      assert.equal(tick.closed, 0, 'none of them was closed');
      assert.equal(tick.waiting, 0, 'none is waiting for an answer');
    }
    assert.ok(Date.now() - written < 120_000);
  });
});
