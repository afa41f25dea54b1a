// Agent lifecycle under load on a 3-node mesh run from the rendered install (the chart's
// DaemonSet, its --drain-seconds patched to 10): SIGTERM with 100 open transfers lets those
// that end within the deadline finish with every byte, resets the ones that do not at the
// deadline, and a rolling restart (--overlap) of the client's or the server's agent refuses no
// connection: the old and the new container hand capture over through the chart's state
// hostPath and bpffs volumes, with read-only root file systems. Install only (the agent code is
// the same under `weft sim`'s own mesh; the install is what a cluster runs), ~90 s.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { INSTALL_MANIFEST, inPod, simCluster, uniqueName, weft, type SimStatus } from '../support/sim.ts';
import { accessLines, agentLog, clientInPod, fileSize, pod, type AccessLine } from './mesh-support.ts';

const DRAIN_SECONDS = 10;
const CONNECTIONS = 100;
const KIB = 1024;
const SLOW_PORT = 9001;
/** Per connection: 100 of them move 6.4 MiB/s in all. */
const SLOW_RATE = 64 * KIB;

interface Download {
  target: string;
  contentLength: number;
  body: number;
  ending: string;
  headersAt: number;
  doneAt: number;
}

/** The agent's shutdown log lines after byte `from`, as "msg +ms" from the first. */
function shutdownSteps(path: string, from: number): string {
  const steps = readFileSync(path).subarray(from).toString().split('\n')
    .filter((l) => l.startsWith('{') && !l.includes('"msg":"connection"') && !l.includes('"msg":"request"'))
    .map((l) => JSON.parse(l) as { time: number; msg: string })
    .filter((l) => /draining|capture|stopped|control plane/.test(l.msg));
  const t0 = steps[0]?.time ?? 0;
  return steps.map((l) => `${l.msg} +${l.time - t0}ms`).join('; ');
}

async function status(name: string): Promise<SimStatus & { meshProcesses: Record<string, number> }> {
  const r = await weft(['sim', 'status', '--name', name, '--json']);
  return JSON.parse(r.stdout) as SimStatus & { meshProcesses: Record<string, number> };
}

test('agent lifecycle: drain on SIGTERM with 100 transfers, rolling restart without refusals', { timeout: 280_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter'])) return;
  const name = uniqueName('ml');
  const s = await simCluster(t, name, ['--nodes', '3', '--pods-per-node', '3', '--agent-args', `--drain-seconds ${DRAIN_SECONDS}`, '--install', INSTALL_MANIFEST]);
  const dir = mkdtempSync(join(tmpdir(), 'weft-mesh-lifecycle-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const client = pod(s, 'hello-1-1');
  // Across nodes: every transfer rides node-1's tunnel to node-2 or node-3.
  const remote = ['echo-2-0', 'echo-2-2', 'echo-3-0', 'echo-3-2', 'hello-2-1', 'hello-3-1'].map((p) => `${pod(s, p).ip}:8080`);
  // Servers that send at a fixed pace, so the transfers' bytes are on the way through the
  // agents while they drain, not already waiting in the client's socket buffer.
  const slowPods = ['echo-2-0', 'echo-3-0'];
  const slow = slowPods.map((p) => `${pod(s, p).ip}:${SLOW_PORT}`);
  for (const p of slowPods) {
    const server = clientInPod(name, p, 'slow-server', { port: SLOW_PORT, bytesPerSecond: SLOW_RATE });
    t.after(() => server.stop());
    await server.waitFor((l) => l.event === 'listening', 15_000, `slow server in ${p}`);
  }

  /** Opens the transfers, SIGTERMs node-1's agent once all are under way, and starts it again. */
  const transfersThroughStop = async (count: number, bytes: number): Promise<{ downloads: Download[]; stopMs: number; sigtermAt: number; lines: AccessLine[] }> => {
    const from = fileSize(agentLog(name, 'node-1'));
    const started = Date.now();
    // The client reads as fast as bytes come; the servers set the pace.
    const c = clientInPod(name, client.name, 'paced-downloads', { targets: slow, count, bytes, bytesPerSecond: 1024 * 1024 * KIB, timeoutMs: 60_000 });
    let stopping: Promise<unknown> | undefined;
    try {
      await c.waitFor((l) => l.event === 'started', 30_000, `${count} transfers under way`);
      const sigtermAt = Date.now() - started;
      const stop$ = weft(['sim', 'mesh', '--name', name, 'stop', 'agent/node-1'], { timeoutMs: 60_000 });
      stopping = stop$;
      // Fail-open: while the agent drains, capture is already released, so a new connection
      // from the node's pod goes straight to its destination instead of meeting a closed listener.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const probe = await inPod(name, client.name, ['curl', '-sS', '-m', '2', '-o', '/dev/null', '-w', '%{http_code}', `http://${remote[1] ?? ''}/`]);
      t.diagnostic(`a new connection during the drain: curl exit ${probe.status} ${probe.stdout} ${probe.stderr.trim()}`);
      assert.equal(probe.status, 0, `a new connection during the drain is not refused: ${probe.stderr}`);
      assert.equal(probe.stdout, '200');
      const stop = await stop$;
      const stopMs = Date.now() - started - sigtermAt;
      assert.equal(stop.status, 0, stop.stderr);
      const result = await c.result(60_000, 'transfers');
      const lines = accessLines(agentLog(name, 'node-1'), from).filter((l) => l.reporter === 'source' && l.src.workload === client.name);
      t.diagnostic(`agent: ${shutdownSteps(agentLog(name, 'node-1'), from)}`);
      return { downloads: result.downloads as Download[], stopMs, sigtermAt, lines };
    } finally {
      c.stop();
      // A failed assertion above must not leave the stop running under the start.
      await stopping;
      const start = await weft(['sim', 'mesh', '--name', name, 'start', 'agent/node-1'], { timeoutMs: 90_000 });
      assert.equal(start.status, 0, start.stderr);
    }
  };

  await t.test(`SIGTERM with ${CONNECTIONS} open transfers: those that end within the drain deadline get every byte`, { timeout: 120_000 }, async () => {
    // 512 KiB at 64 KiB/s: 8 s each, so all are still running when SIGTERM lands.
    const bytes = 8 * SLOW_RATE;
    const r = await transfersThroughStop(CONNECTIONS, bytes);
    const endings = new Map<string, number>();
    for (const d of r.downloads) endings.set(d.ending, (endings.get(d.ending) ?? 0) + 1);
    const lastDone = Math.max(...r.downloads.map((d) => d.doneAt));
    t.diagnostic(`SIGTERM at ${r.sigtermAt} ms; agent gone ${r.stopMs} ms later; transfers ended ${Math.min(...r.downloads.map((d) => d.doneAt))}..${lastDone} ms; ${JSON.stringify(Object.fromEntries(endings))}`);
    assert.equal(r.downloads.length, CONNECTIONS);
    assert.deepEqual(Object.fromEntries(endings), { complete: CONNECTIONS }, 'every transfer completed');
    for (const d of r.downloads) assert.equal(d.body, bytes, `${d.target}: every byte (content-length ${d.contentLength})`);
    assert.ok(Math.min(...r.downloads.map((d) => d.doneAt)) > r.sigtermAt + 2000, 'the transfers were still running well after SIGTERM');
    assert.ok(r.sigtermAt + r.stopMs >= lastDone - 500, 'the agent stayed until the last transfer was done');
    assert.ok(r.stopMs < (DRAIN_SECONDS + 3) * 1000, `the agent exited within the drain deadline (${r.stopMs} ms)`);
    assert.equal(r.lines.length, CONNECTIONS, 'one access-log line per transfer');
    assert.deepEqual([...new Set(r.lines.map((l) => l.flags))], ['-']);
  });

  await t.test('SIGTERM with transfers longer than the deadline: they are cut at the deadline, not before', { timeout: 120_000 }, async () => {
    // 30 s each at 64 KiB/s, far past the 10 s deadline.
    const count = CONNECTIONS;
    const bytes = 30 * SLOW_RATE;
    const r = await transfersThroughStop(count, bytes);
    const ends = r.downloads.map((d) => d.doneAt - r.sigtermAt);
    t.diagnostic(`SIGTERM at ${r.sigtermAt} ms; agent gone ${r.stopMs} ms later; transfers cut ${Math.min(...ends)}..${Math.max(...ends)} ms after SIGTERM; endings ${JSON.stringify([...new Set(r.downloads.map((d) => d.ending))])}`);
    assert.equal(r.downloads.length, count);
    for (const d of r.downloads) {
      assert.ok(d.body < bytes, `${d.target} did not complete (${d.body} bytes)`);
      assert.match(d.ending, /^error:ECONNRESET$/, `${d.target} is reset, not ended cleanly`);
    }
    assert.ok(Math.min(...ends) >= DRAIN_SECONDS * 1000 - 1000, `nothing was cut before the deadline (first at ${Math.min(...ends)} ms)`);
    assert.ok(Math.max(...ends) <= (DRAIN_SECONDS + 4) * 1000, `all were cut soon after it (last at ${Math.max(...ends)} ms)`);
    assert.ok(r.stopMs < (DRAIN_SECONDS + 4) * 1000, `the agent exited after the deadline (${r.stopMs} ms)`);
    assert.equal(r.lines.length, count, 'one access-log line per transfer');
    assert.deepEqual([...new Set(r.lines.map((l) => l.flags))], ['DRAIN']);
  });

  // The client's node (outbound capture and listener) and a destination node (tunnel listener).
  for (const restarted of ['node-1', 'node-2']) {
    await t.test(`a rolling restart (--overlap) of ${restarted}'s agent refuses no connection and never lets capture lapse`, { timeout: 120_000 }, async () => {
      const component = `agent/${restarted}`;
      const oldPid = (await status(name)).meshProcesses[component];
      const stopFile = join(dir, `stop-loop-${restarted}`);
      const targets = [...remote.slice(0, 2), '198.19.0.10:80', `${pod(s, 'echo-1-0').ip}:8080`];
      const loop = clientInPod(name, client.name, 'connection-loop', { targets, durationMs: 90_000, stopFile, parallel: 2, timeoutMs: 5_000 });
      try {
        await loop.waitFor((l) => l.event === 'progress' && Number(l.ok) >= 50, 30_000, 'the loop is running');
        const began = Date.now();
        const r = await weft(['sim', 'mesh', '--name', name, 'restart', component, '--overlap'], { timeoutMs: 90_000 });
        assert.equal(r.status, 0, r.stderr);
        const restartMs = Date.now() - began;
        // The old agent is gone: whatever is logged from here on is the new one's.
        const from = fileSize(agentLog(name, restarted));
        await new Promise((resolve) => setTimeout(resolve, 2000));
        writeFileSync(stopFile, '');
        const result = await loop.result(20_000, 'loop result');
        const newLines = accessLines(agentLog(name, restarted), from).filter((l) => l.src.workload === client.name);
        t.diagnostic(`restart took ${restartMs} ms; loop: ${JSON.stringify({ ok: result.ok, failed: result.failed, uncaptured: result.uncaptured, ms: result.ms })}; ${newLines.length} connections logged by the new agent`);
        assert.notEqual((await status(name)).meshProcesses[component], oldPid, 'a new agent process');
        assert.equal(result.failed, 0, `failures: ${JSON.stringify(result.failures)}`);
        assert.equal(result.uncaptured, 0, 'every connection went through an agent');
        assert.ok(Number(result.ok) > 100, `the loop kept going (${String(result.ok)} connections)`);
        assert.ok(newLines.length > 0, 'the new agent serves the new connections');
      } finally {
        writeFileSync(stopFile, '');
        loop.stop();
      }
    });
  }
});
