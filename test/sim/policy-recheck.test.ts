// Live policy re-check at scale (issue 9, point 4), end to end on a 2-node simulated mesh:
// 10,000 TCP connections held open across the tunnel (5,000 from a pod running as `web`,
// 5,000 from one running as `batch`, all on node-1, to one echo server on node-2), every one
// of them sending and getting back 8 bytes every 2 s. An AuthorizationPolicy that lets only
// `web` in arrives: both agents judge their open connections again, and the 5,000 batch
// connections are reset within a second of an agent applying that config, while every web
// connection keeps answering. The agents' descriptor budget decides whether 10,000 fit: one
// agent holds two descriptors per outbound connection in its budget (the caps of
// src/app/fd-budget.ts), so this test gives the cluster RLIMIT_NOFILE 65,536 (as a node's
// container runtime does; this machine's shell default of 20,000 leaves room for ~9,000).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { simCluster, uniqueName } from '../support/sim.ts';
import { defaultManifests } from '../../src/sim/defaults.ts';
import { startInPod, until, type InPod } from './capture-support.ts';
import { accessLines, agentLog, fileSize, pod } from './mesh-support.ts';

const PER_CLIENT = 5000;
const SINK = '198.19.0.210';
const PORT = 9100;
const HOLDER = join(import.meta.dirname, 'many-holder.py');
const ECHO = join(import.meta.dirname, 'many-echo.py');
const NOFILE = 65_536;

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
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: demo, labels: {app: web}}
spec:
  nodeName: node-1
  serviceAccountName: web
  containers: [{name: app, image: weft/echo, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: batch-1, namespace: demo, labels: {app: batch}}
spec:
  nodeName: node-1
  serviceAccountName: batch
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
  if (!needsRoot(t, ['python3', 'nsenter', 'prlimit'])) return;
  // The agents, pods and clients started below inherit this process's limit.
  const raised = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${NOFILE}:${NOFILE}`], { encoding: 'utf8' });
  assert.equal(raised.status, 0, `prlimit: ${raised.stderr}`);
  const name = uniqueName('pr');
  const dir = mkdtempSync(join(tmpdir(), 'weft-recheck-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of defaultManifests(2, 1)) writeFileSync(join(dir, f.path), f.text);
  writeFileSync(join(dir, 'recheck.yaml'), MANIFESTS);
  const s = await simCluster(t, name, ['--nodes', '2', '--manifests', dir]);
  const logs = { source: agentLog(name, 'node-1'), destination: agentLog(name, 'node-2') };
  const budget = logTimes(logs.source, 0, 'file descriptor budget')[0]?.line;
  t.diagnostic(`node-1's descriptor budget: ${JSON.stringify(budget)}`);
  assert.equal(budget?.limit, NOFILE, 'the agent runs with the raised limit');

  const server = startInPod(pod(s, 'sink-2'), ['python3', ECHO, String(PORT), '400']);
  t.after(() => server.stop());
  await server.waitLine(/"listening"/, 20_000);
  const hold = (from: string): InPod => {
    const h = startInPod(pod(s, from), ['python3', HOLDER, SINK, String(PORT), String(PER_CLIENT), '300']);
    t.after(() => h.stop());
    return h;
  };
  const web = hold('web-1');
  const batch = hold('batch-1');
  for (const [who, h] of [['web', web], ['batch', batch]] as const) {
    const open = JSON.parse(await h.waitLine(/"event": "open"/, 180_000)) as Tick;
    t.diagnostic(`${who}: ${JSON.stringify(open)}`);
    assert.equal(open.n, PER_CLIENT, `all ${PER_CLIENT} ${who} connections open and answering`);
    assert.equal(open.failed, 0);
  }
  // Both keep transferring: a full cycle (every connection answered) before the change.
  const before = Date.now() / 1000;
  await until('every connection to answer once more before the change', 30_000, () =>
    ([web, batch].every((h) => (last(h)?.oldestAnswer ?? 0) > before) ? true : undefined));

  const from = { source: fileSize(logs.source), destination: fileSize(logs.destination) };
  const written = Date.now();
  writeFileSync(join('/run/weft/sim', name, 'manifests', 'only-web.yaml'), ONLY_WEB);

  await t.test('the 5,000 batch connections are reset within a second of an agent applying the policy', async () => {
    const done = await until('every batch connection to be closed', 60_000, () => {
      const tick = last(batch);
      return tick !== undefined && tick.closed === PER_CLIENT ? tick : undefined;
    });
    const applied = [
      ...logTimes(logs.source, from.source, 'config applied'), ...logTimes(logs.destination, from.destination, 'config applied'),
    ].map((a) => a.time);
    assert.ok(applied.length >= 2, 'both agents applied the new config');
    const firstApplied = Math.min(...applied);
    const lastClose = (done.lastClose ?? 0) * 1000;
    const firstClose = (done.firstClose ?? 0) * 1000;
    t.diagnostic(`policy written → first agent applied: ${firstApplied - written} ms; applied → first reset seen by a client: ${Math.round(firstClose - firstApplied)} ms, → last: ${Math.round(lastClose - firstApplied)} ms; how: ${JSON.stringify(done.reasons)}`);
    assert.ok(lastClose - firstApplied < 1000, `all ${PER_CLIENT} closed within a second of the first agent applying the config (${Math.round(lastClose - firstApplied)} ms)`);
    assert.deepEqual(Object.keys(done.reasons ?? {}), ['ECONNRESET'], 'reset, not a clean end');
    const workers = [...logTimes(logs.source, from.source, 'closed open connections the new policy no longer allows'),
      ...logTimes(logs.destination, from.destination, 'closed open connections the new policy no longer allows')];
    const closed = workers.reduce((n, w) => n + Number(w.line.connections), 0);
    t.diagnostic(`workers that closed connections: ${workers.map((w) => `${String(w.line.connections)} at +${w.time - firstApplied} ms`).join(', ')}`);
    assert.ok(closed >= PER_CLIENT, `the agents' workers say they closed them (${closed}, both sides counted)`);
    const denied = await until('the access log to name the policy', 20_000, () => {
      // Whichever agent re-checks first resets the connection; the other may see a reset peer.
      const lines = [...accessLines(logs.source, from.source), ...accessLines(logs.destination, from.destination)].filter((l) => l.flags === 'DENY');
      return lines.length >= PER_CLIENT ? lines : undefined;
    });
    assert.match(denied[0]?.detail ?? '', /^closed by a policy change: no rule of the 1 ALLOW policy/);
    assert.ok(denied.every((l) => l.src.identity?.endsWith('/sa/batch')), 'only batch connections were denied');
  });

  await t.test('the 5,000 web connections keep transferring', async () => {
    const after = Date.now() / 1000;
    const tick = await until('every web connection to answer again after the change', 30_000, () => {
      const l = last(web);
      return l !== undefined && (l.oldestAnswer ?? 0) > after ? l : undefined;
    });
    t.diagnostic(`web after the change: ${JSON.stringify(tick)}`);
    assert.equal(tick.open, PER_CLIENT);
    assert.equal(tick.closed, 0, 'none of them was closed');
    assert.equal(tick.waiting, 0, 'none is waiting for an answer');
    assert.ok(Date.now() - written < 120_000);
  });
});
