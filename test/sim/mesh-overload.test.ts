// Hostile floods on a 3-node simulated mesh (issue 16, points 3, 4 and 6):
// - 20,000 idle connections from one pod: the pod hits its per-source cap, other pods' calls
//   keep succeeding (>= 99%), the cap and the refusals show on /metrics;
// - 20,000 idle connections to a node's 15008 from another node: pending handshakes capped per
//   address, calls through established tunnels keep succeeding, the caps show on /metrics;
// - after each flood node-1's agent's RSS comes back within the stated margin of its level at
//   rest before the floods;
// - after every fault, each agent's opened minus closed equals the connections it really has
//   open (its sockets, counted with ss).
// The floods are bounded (count and time), run only inside the simulator's namespaces, and
// are split over processes of 10,000 sockets each (below the RLIMIT_NOFILE they inherit).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName, WEFT } from '../support/sim.ts';
import { agentLog, agentMetrics, CLIENTS, eventually, fileSize, JsonProcess, node, pod, sample, type Json } from './mesh-support.ts';
import { agentPid, assertAccounting } from './mesh-accounting.ts';

const FLOOD = 20_000;
/**
 * After each flood, once settled, the agent's RSS may exceed its level at rest before the
 * floods (warmed up, every path used) by at most this much.
 */
const RSS_MARGIN_BYTES = 64 * 2 ** 20;
const RSS_SETTLE_MS = 60_000;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `VmRSS of ${pid}`);
  return Number(m[1]) * 1024;
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;

/** Flood processes: each holds up to FLOOD_PER_PROCESS sockets (below the RLIMIT_NOFILE they inherit). */
const FLOOD_PER_PROCESS = 10_000;

/** `count` idle connections from a pod or a namespace, split over as many flood processes as needed. */
function floodClients(where: { cluster: string; pod: string } | { netns: string }, options: { count: number } & Record<string, unknown>): JsonProcess[] {
  const out: JsonProcess[] = [];
  for (let left = options.count; left > 0; left -= FLOOD_PER_PROCESS) {
    const inner = [process.execPath, CLIENTS, 'idle-flood', JSON.stringify({ ...options, count: Math.min(left, FLOOD_PER_PROCESS) })];
    const argv = 'pod' in where ? [WEFT, 'sim', 'exec', '--name', where.cluster, where.pod, '--', ...inner] : ['nsenter', `--net=/run/netns/${where.netns}`, ...inner];
    out.push(new JsonProcess(spawn(argv[0] ?? '', argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })));
  }
  return out;
}

/** Every flood process's result, summed: opened, connected, and how connections ended. */
async function floodResults(floods: readonly JsonProcess[]): Promise<{ opened: number; connected: number; endings: Record<string, number>; peak: number }> {
  const peaks = await Promise.all(floods.map((f) => f.waitFor((l) => l.event === 'opened', 180_000, 'the flood opened')));
  const results = await Promise.all(floods.map((f) => f.result(60_000, 'flood result')));
  for (const f of floods) f.stop();
  const endings: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.endings as Record<string, number>)) endings[k] = (endings[k] ?? 0) + v;
  return {
    opened: results.reduce((a, r) => a + Number(r.opened), 0),
    connected: results.reduce((a, r) => a + Number(r.connected), 0),
    peak: peaks.reduce((a, p) => a + Number(p.open), 0),
    endings,
  };
}

function loopClient(cluster: string, from: string, targets: readonly string[], stopFile: string): JsonProcess {
  const argv = [WEFT, 'sim', 'exec', '--name', cluster, from, '--', process.execPath, CLIENTS, 'connection-loop',
    JSON.stringify({ targets, durationMs: 150_000, stopFile, parallel: 2, timeoutMs: 10_000 })];
  return new JsonProcess(spawn(argv[0] ?? '', argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }));
}

async function rssSettles(pid: number, before: number): Promise<number> {
  let last = rssBytes(pid);
  await eventually(() => {
    last = rssBytes(pid);
    return last <= before + RSS_MARGIN_BYTES ? last : undefined;
  }, RSS_SETTLE_MS, 1000);
  return last;
}

function successRatio(r: Json): { ok: number; failed: number; ratio: number } {
  const ok = Number(r.ok);
  const failed = Number(r.failed);
  return { ok, failed, ratio: ok / Math.max(1, ok + failed) };
}

test('floods: caps hold, calls go on, memory comes back, nothing leaks (3-node mesh)', { timeout: 900_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'ss'])) return;
  const name = uniqueName('ovl');
  const s = await simCluster(t, name, ['--nodes', '3', '--pods-per-node', '2']);
  const ip = (p: string): string => pod(s, p).ip;
  const stopFile = (what: string): string => `/run/weft/sim/${name}/stop-${what}`;
  // Warm up every path the calls below take, so tunnels are pooled before any flood.
  for (const [from, to] of [['echo-1-0', 'echo-2-0'], ['echo-1-0', 'hello-3-1'], ['hello-3-1', 'echo-1-0'], ['echo-2-0', 'echo-1-0'], ['echo-1-0', 'hello-2-1']]) {
    const r = await inPod(name, from, ['curl', '-sf', '-m', '5', `http://${ip(to)}:8080/`], 30_000);
    assert.equal(r.status, 0, `${from} -> ${to}: ${r.stderr}`);
  }
  await assertAccounting(s, name, 'at rest');
  const rssAtRest = rssBytes(agentPid(name, 'node-1'));
  /** node-1's 'memory reclaimed' log lines from `from` on (printed with each flood's numbers). */
  const reclaims = (from: number): string[] => readFileSync(agentLog(name, 'node-1'), 'utf8').slice(from).split('\n')
    .filter((l) => l.includes('memory reclaimed')).map((l) => {
      try {
        const r = JSON.parse(l) as { reason: string; rssMiB: number; rssAfterMiB: number };
        return `${r.reason} ${r.rssMiB}->${r.rssAfterMiB}`;
      } catch {
        return l;
      }
    });

  await t.test(`${FLOOD} idle connections from one pod: it hits its cap, other pods' calls go on, /metrics shows it, memory comes back`, { timeout: 300_000 }, async () => {
    const pid1 = agentPid(name, 'node-1');
    const rssBefore = rssBytes(pid1);
    const logFrom = fileSize(agentLog(name, 'node-1'));
    const loop = loopClient(name, 'echo-1-0', [`${ip('echo-2-0')}:8080`, `${ip('hello-3-1')}:8080`, '198.19.0.10:80'], stopFile('pod-flood'));
    try {
      await loop.waitFor((l) => l.event === 'progress' && Number(l.ok) >= 10, 60_000, 'the calls are going');
      // The flooder is on the same node as the caller, its target on another node.
      const floods = floodClients({ cluster: name, pod: 'hello-1-1' }, { target: `${ip('hello-2-1')}:8080`, count: FLOOD, parallel: 100, holdMs: 10_000, maxMs: 150_000 });
      let rssPeak = rssBefore;
      const peakWatch = setInterval(() => { rssPeak = Math.max(rssPeak, rssBytes(pid1)); }, 500);
      const result = await floodResults(floods).finally(() => clearInterval(peakWatch));
      const metrics = await agentMetrics(s, 'node-1');
      writeStop(stopFile('pod-flood'));
      const calls = successRatio(await loop.result(60_000, 'loop result'));
      process.stdout.write(`# pod flood: ${JSON.stringify(result)}; other pod's calls ${calls.ok} ok, ${calls.failed} failed\n`);
      assert.equal(result.opened, FLOOD);
      assert.ok(calls.ok >= 20, `the other pod kept calling (${calls.ok})`);
      assert.ok(calls.ratio >= 0.99, `other pods' calls succeeded ${(calls.ratio * 100).toFixed(2)}% (${calls.failed} failed)`);
      // The cap: 4,512 descriptors per source at RLIMIT_NOFILE 20,000 (fd-budget.ts), 2 per connection.
      assert.equal(sample(metrics, 'weft_proxy_connection_fd_cap', { scope: 'source' }), 4_512);
      const refused = sample(metrics, 'weft_proxy_connections_refused_total', { listener: 'outbound', cap: 'source' });
      assert.ok(refused >= FLOOD - 2_400, `refusals counted: ${refused}`);
      assert.ok((result.endings['error:ECONNRESET'] ?? 0) >= FLOOD - 2_400, `refused connections were reset: ${JSON.stringify(result.endings)}`);
      const rssAfter = await rssSettles(pid1, rssAtRest);
      process.stdout.write(`# node-1 agent RSS ${mib(rssAtRest)} at rest, ${mib(rssBefore)} before this flood, ${mib(rssPeak)} at the peak, ${mib(rssAfter)} after (margin ${mib(RSS_MARGIN_BYTES)}); reclaims: ${reclaims(logFrom).join(', ')}\n`);
      assert.ok(rssAfter <= rssAtRest + RSS_MARGIN_BYTES, `RSS came back to ${mib(rssAfter)} (at rest ${mib(rssAtRest)}, margin ${mib(RSS_MARGIN_BYTES)})`);
      await assertAccounting(s, name, 'after the pod flood');
    } finally {
      writeStop(stopFile('pod-flood'));
      loop.stop();
    }
  });

  await t.test(`${FLOOD} idle connections to 15008 from another node: handshakes capped per address, calls go on, /metrics shows it, memory comes back`, { timeout: 300_000 }, async () => {
    const pid1 = agentPid(name, 'node-1');
    const rssBefore = rssBytes(pid1);
    const logFrom = fileSize(agentLog(name, 'node-1'));
    // Calls into node-1 from node-2 (another address) and from node-3 (the flood's own address,
    // through its already pooled tunnel).
    const loops = [
      loopClient(name, 'echo-2-0', [`${ip('echo-1-0')}:8080`], stopFile('tunnel-flood-2')),
      loopClient(name, 'hello-3-1', [`${ip('echo-1-0')}:8080`], stopFile('tunnel-flood-3')),
    ];
    try {
      for (const l of loops) await l.waitFor((x) => x.event === 'progress' && Number(x.ok) >= 10, 60_000, 'the calls are going');
      const floods = floodClients({ netns: node(s, 'node-3').netns }, { target: `${node(s, 'node-1').ip}:15008`, count: FLOOD, parallel: 100, holdMs: 12_000, maxMs: 150_000 });
      let rssPeak = rssBefore;
      const peakWatch = setInterval(() => { rssPeak = Math.max(rssPeak, rssBytes(pid1)); }, 500);
      const result = await floodResults(floods).finally(() => clearInterval(peakWatch));
      const metrics = await agentMetrics(s, 'node-1');
      writeStop(stopFile('tunnel-flood-2'));
      writeStop(stopFile('tunnel-flood-3'));
      const calls = await Promise.all(loops.map(async (l) => successRatio(await l.result(60_000, 'loop result'))));
      process.stdout.write(`# tunnel flood: ${JSON.stringify(result)}; calls ${JSON.stringify(calls)}\n`);
      for (const c of calls) {
        assert.ok(c.ok >= 20, `calls kept going (${c.ok})`);
        assert.ok(c.ratio >= 0.99, `calls succeeded ${(c.ratio * 100).toFixed(2)}% (${c.failed} failed)`);
      }
      assert.equal(sample(metrics, 'weft_tunnel_handshake_cap', { scope: 'source' }), 64);
      const refused = sample(metrics, 'weft_tunnel_handshakes_refused_total', { cap: 'source' });
      assert.ok(refused >= FLOOD / 2, `handshake refusals counted: ${refused}`);
      assert.ok(sample(metrics, 'weft_tunnel_handshake_failures_total', { reason: 'timeout' }) >= 1, 'the held ones timed out');
      const rssAfter = await rssSettles(pid1, rssAtRest);
      process.stdout.write(`# node-1 agent RSS ${mib(rssAtRest)} at rest, ${mib(rssBefore)} before this flood, ${mib(rssPeak)} at the peak, ${mib(rssAfter)} after (margin ${mib(RSS_MARGIN_BYTES)}); reclaims: ${reclaims(logFrom).join(', ')}\n`);
      assert.ok(rssAfter <= rssAtRest + RSS_MARGIN_BYTES, `RSS came back to ${mib(rssAfter)} (at rest ${mib(rssAtRest)}, margin ${mib(RSS_MARGIN_BYTES)})`);
      await assertAccounting(s, name, 'after the tunnel flood');
    } finally {
      writeStop(stopFile('tunnel-flood-2'));
      writeStop(stopFile('tunnel-flood-3'));
      for (const l of loops) l.stop();
    }
  });
});

function writeStop(file: string): void {
  writeFileSync(file, '');
}
