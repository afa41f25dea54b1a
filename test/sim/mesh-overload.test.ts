// Hostile floods on a 2-node simulated mesh (issue 16, points 3, 4 and 6; its done-when "20,000
// idle connections to 15008 from another node, or from one pod: other pods' calls keep
// succeeding (>= 99%), and the caps are visible in /metrics"):
// - 20,000 idle connections from one pod: the pod hits its per-source cap, the rest are reset
//   and counted, a neighbour pod's calls keep succeeding, the cap and the refusals show on
//   /metrics;
// - 20,000 connections to node-1's 15008 from node-2's own namespace that never finish a
//   handshake (half send nothing, half the start of a ClientHello): pending handshakes are
//   capped per address, calls through the established tunnels keep succeeding, the caps show;
// - after each flood node-1's agent's RSS comes back within RSS_MARGIN_BYTES of its level at
//   rest before the floods;
// - after every flood, each agent's opened minus closed equals the connections it really has
//   open (its sockets, counted with ss, less the HTTP layer's pooled pod sockets).
// The floods are bounded in count and time (each process stops by itself after maxMs), run
// only inside the simulator's namespaces, and are split over processes of 10,000 sockets each.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fdBudget } from '../../src/app/fd-budget.ts';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName, WEFT, type SimStatus } from '../support/sim.ts';
import { agentLog, agentMetrics, CLIENTS, eventually, fileSize, JsonProcess, node, pod, sample, type Json } from './mesh-support.ts';
import { agentPid, assertAccounting } from './mesh-accounting.ts';

const FLOOD = 20_000;
/**
 * After each flood, once settled, the agent's RSS may exceed its level at rest before the
 * floods (warmed up, every path used) by at most this much.
 */
const RSS_MARGIN_BYTES = 64 * 2 ** 20;
const RSS_SETTLE_MS = 90_000;
/** Flood processes: each holds up to this many sockets (Node raises its RLIMIT_NOFILE to the hard limit). */
const FLOOD_PER_PROCESS = 10_000;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `VmRSS of ${pid}`);
  return Number(m[1]) * 1024;
}

/** The agent's RLIMIT_NOFILE (soft: the one it raised to the hard limit at start). */
function nofile(pid: number): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  assert.ok(m, `RLIMIT_NOFILE of ${pid}`);
  return Number(m[1]);
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;

/** `count` idle connections from a pod or a namespace, split over as many flood processes as needed. */
function floodClients(where: { cluster: string; pod: string } | { netns: string }, options: { count: number } & Record<string, unknown>): JsonProcess[] {
  const out: JsonProcess[] = [];
  for (let left = options.count, i = 0; left > 0; left -= FLOOD_PER_PROCESS, i++) {
    const own = { ...options, count: Math.min(left, FLOOD_PER_PROCESS), ...(Array.isArray(options.tls) ? { tls: options.tls[i % options.tls.length] as boolean } : {}) };
    const inner = [process.execPath, CLIENTS, 'idle-flood', JSON.stringify(own)];
    const argv = 'pod' in where ? [WEFT, 'sim', 'exec', '--name', where.cluster, where.pod, '--', ...inner] : ['nsenter', `--net=/run/netns/${where.netns}`, ...inner];
    out.push(new JsonProcess(spawn(argv[0] ?? '', argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })));
  }
  return out;
}

/** Every flood process's result, summed: opened, connected, and how connections ended. */
async function floodResults(floods: readonly JsonProcess[]): Promise<{ opened: number; connected: number; heldToTheEnd: number; endings: Record<string, number> }> {
  const results = await Promise.all(floods.map((f) => f.result(240_000, 'flood result')));
  for (const f of floods) f.stop();
  const endings: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.endings as Record<string, number>)) endings[k] = (endings[k] ?? 0) + v;
  const sum = (k: string): number => results.reduce((a, r) => a + Number(r[k]), 0);
  return { opened: sum('opened'), connected: sum('connected'), heldToTheEnd: sum('heldToTheEnd'), endings };
}

/** One HTTP GET per connection, 2 at a time, until the stop file exists (150 s at most). */
function loopClient(cluster: string, from: string, targets: readonly string[], stopFile: string): JsonProcess {
  const argv = [WEFT, 'sim', 'exec', '--name', cluster, from, '--', process.execPath, CLIENTS, 'connection-loop',
    JSON.stringify({ targets, durationMs: 150_000, stopFile, parallel: 2, timeoutMs: 10_000 })];
  return new JsonProcess(spawn(argv[0] ?? '', argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }));
}

async function rssSettles(pid: number, bound: number): Promise<number> {
  let last = rssBytes(pid);
  await eventually(() => {
    last = rssBytes(pid);
    return last <= bound ? last : undefined;
  }, RSS_SETTLE_MS, 1000);
  return last;
}

function successRatio(r: Json): { ok: number; failed: number; ratio: number; failures: unknown } {
  const ok = Number(r.ok);
  const failed = Number(r.failed);
  return { ok, failed, ratio: ok / Math.max(1, ok + failed), failures: r.failures };
}

/** Watches an agent's RSS every 500 ms; stop() gives the highest seen. */
function peakWatch(pid: number): { stop(): number } {
  let peak = rssBytes(pid);
  const timer = setInterval(() => { peak = Math.max(peak, rssBytes(pid)); }, 500);
  return { stop: () => { clearInterval(timer); return peak; } };
}

function vipOf(s: SimStatus, service: string): string {
  const svc = s.services.find((x) => x.name === service);
  assert.ok(svc !== undefined && svc.ports[0] !== undefined, `service ${service}`);
  return `${svc.vip}:${svc.ports[0].port}`;
}

test('floods: caps hold, other pods\' calls go on, the caps show on /metrics, memory comes back, nothing leaks (2-node mesh)', { timeout: 900_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'ss'])) return;
  const name = uniqueName('ovl');
  const s = await simCluster(t, name, ['--nodes', '2', '--pods-per-node', '2']);
  const ip = (p: string): string => pod(s, p).ip;
  const stopFile = (what: string): string => `/run/weft/sim/${name}/stop-${what}`;
  // Warm up every path the calls below take, so their tunnels are pooled before any flood.
  for (const [from, to] of [['echo-1-0', 'echo-2-0'], ['echo-2-0', 'echo-1-0'], ['hello-2-1', 'echo-1-0'], ['echo-1-0', 'hello-2-1'], ['hello-1-1', 'hello-2-1']]) {
    const r = await inPod(name, from ?? '', ['curl', '-sf', '-m', '5', `http://${ip(to ?? '')}:8080/`], 30_000);
    assert.equal(r.status, 0, `${from} -> ${to}: ${r.stderr}`);
  }
  await assertAccounting(s, name, 'at rest');
  const pid1 = agentPid(name, 'node-1');
  const budget = fdBudget(nofile(pid1));
  const rssAtRest = rssBytes(pid1);
  /** node-1's 'memory reclaimed' log lines from byte `from` on (printed with each flood's numbers). */
  const reclaims = (from: number): string[] => readFileSync(agentLog(name, 'node-1')).subarray(from).toString().split('\n')
    .filter((l) => l.includes('memory reclaimed')).map((l) => {
      try {
        const r = JSON.parse(l) as { reason: string; rssMiB: number; rssAfterMiB: number };
        return `${r.reason} ${r.rssMiB}->${r.rssAfterMiB}`;
      } catch {
        return l;
      }
    });

  await t.test(`${FLOOD} idle connections from one pod: it hits its cap, a neighbour's calls go on, /metrics shows it, memory comes back`, { timeout: 360_000 }, async () => {
    const logFrom = fileSize(agentLog(name, 'node-1'));
    const rssBefore = rssBytes(pid1);
    // The caller is on the flooder's node; it calls across nodes and a Service VIP.
    const loop = loopClient(name, 'echo-1-0', [`${ip('echo-2-0')}:8080`, vipOf(s, 'echo'), `${ip('hello-2-1')}:8080`], stopFile('pod-flood'));
    try {
      await loop.waitFor((l) => l.event === 'progress' && Number(l.ok) >= 10, 60_000, 'the calls are going');
      const watch = peakWatch(pid1);
      const floods = floodClients({ cluster: name, pod: 'hello-1-1' }, { target: `${ip('hello-2-1')}:8080`, count: FLOOD, parallel: 100, holdMs: 10_000, maxMs: 150_000 });
      const result = await floodResults(floods).finally(() => watch.stop());
      const rssPeak = watch.stop();
      const metrics = await agentMetrics(s, 'node-1');
      writeFileSync(stopFile('pod-flood'), '');
      const calls = successRatio(await loop.result(60_000, 'loop result'));
      process.stdout.write(`# pod flood: ${JSON.stringify(result)}; the neighbour's calls: ${calls.ok} ok, ${calls.failed} failed ${JSON.stringify(calls.failures)}\n`);
      assert.equal(result.opened, FLOOD);
      assert.ok(calls.ok >= 20, `the neighbour kept calling (${calls.ok})`);
      assert.ok(calls.ratio >= 0.99, `the neighbour's calls succeeded ${(calls.ratio * 100).toFixed(2)}% (${calls.failed} failed)`);
      // The per-source cap from the agent's own RLIMIT_NOFILE (fd-budget.ts); 2 descriptors per outbound connection.
      assert.equal(sample(metrics, 'weft_proxy_connection_fd_cap', { scope: 'source' }), budget.perSourceFds);
      assert.equal(sample(metrics, 'weft_proxy_connection_fd_cap', { scope: 'global' }), budget.connectionFds);
      const held = Math.floor(budget.perSourceFds / 2);
      const refused = sample(metrics, 'weft_proxy_connections_refused_total', { listener: 'outbound', cap: 'source' });
      assert.ok(refused >= FLOOD - held - 100, `refusals counted: ${refused} (the pod may hold about ${held})`);
      assert.ok((result.endings['error:ECONNRESET'] ?? 0) >= FLOOD - held - 100, `refused connections were reset: ${JSON.stringify(result.endings)}`);
      const rssAfter = await rssSettles(pid1, rssAtRest + RSS_MARGIN_BYTES);
      process.stdout.write(`# node-1 agent RSS ${mib(rssAtRest)} at rest, ${mib(rssBefore)} before this flood, ${mib(rssPeak)} at its peak, ${mib(rssAfter)} after (margin ${mib(RSS_MARGIN_BYTES)}); reclaims: ${reclaims(logFrom).join(', ')}\n`);
      assert.ok(rssAfter <= rssAtRest + RSS_MARGIN_BYTES, `RSS came back to ${mib(rssAfter)} (at rest ${mib(rssAtRest)}, margin ${mib(RSS_MARGIN_BYTES)})`);
      await assertAccounting(s, name, 'after the pod flood');
    } finally {
      writeFileSync(stopFile('pod-flood'), '');
      loop.stop();
    }
  });

  await t.test(`${FLOOD} connections to 15008 from another node that never finish a handshake: capped per address, calls go on, /metrics shows it, memory comes back`, { timeout: 360_000 }, async () => {
    const logFrom = fileSize(agentLog(name, 'node-1'));
    const rssBefore = rssBytes(pid1);
    // Calls into node-1 from the flood's own node (its pooled tunnels) and within node-1.
    const loops = [
      loopClient(name, 'echo-2-0', [`${ip('echo-1-0')}:8080`], stopFile('tunnel-flood-2')),
      loopClient(name, 'hello-2-1', [`${ip('echo-1-0')}:8080`], stopFile('tunnel-flood-3')),
      loopClient(name, 'hello-1-1', [`${ip('echo-1-0')}:8080`, `${ip('echo-2-0')}:8080`], stopFile('tunnel-flood-1')),
    ];
    const stopAll = (): void => {
      for (const f of ['tunnel-flood-1', 'tunnel-flood-2', 'tunnel-flood-3']) writeFileSync(stopFile(f), '');
    };
    try {
      for (const l of loops) await l.waitFor((x) => x.event === 'progress' && Number(x.ok) >= 10, 60_000, 'the calls are going');
      const watch = peakWatch(pid1);
      // From node-2's host namespace: its node address, the one its agent's tunnels come from.
      const floods = floodClients({ netns: node(s, 'node-2').netns }, {
        target: `${node(s, 'node-1').ip}:15008`, count: FLOOD, parallel: 100, holdMs: 12_000, maxMs: 150_000, tls: [false, true],
      });
      const result = await floodResults(floods).finally(() => watch.stop());
      const rssPeak = watch.stop();
      const metrics = await agentMetrics(s, 'node-1');
      stopAll();
      const calls = await Promise.all(loops.map(async (l) => successRatio(await l.result(60_000, 'loop result'))));
      process.stdout.write(`# tunnel flood: ${JSON.stringify(result)}; calls ${JSON.stringify(calls)}\n`);
      assert.equal(result.opened, FLOOD);
      for (const c of calls) {
        assert.ok(c.ok >= 20, `calls kept going (${c.ok})`);
        assert.ok(c.ratio >= 0.99, `calls succeeded ${(c.ratio * 100).toFixed(2)}% (${c.failed} failed: ${JSON.stringify(c.failures)})`);
      }
      assert.equal(sample(metrics, 'weft_tunnel_handshake_cap', { scope: 'source' }), budget.maxPendingHandshakesPerSource);
      assert.equal(sample(metrics, 'weft_tunnel_handshake_cap', { scope: 'global' }), budget.maxPendingHandshakes);
      const refused = sample(metrics, 'weft_tunnel_handshakes_refused_total', { cap: 'source' });
      assert.ok(refused >= FLOOD / 2, `handshake refusals counted: ${refused}`);
      assert.ok(sample(metrics, 'weft_tunnel_handshake_failures_total', { reason: 'timeout' }) >= 1, 'the held ones timed out');
      // The held ones timed out before the flood let go: none was let in.
      assert.ok(result.heldToTheEnd <= budget.maxPendingHandshakesPerSource, `held to the end: ${result.heldToTheEnd}`);
      const rssAfter = await rssSettles(pid1, rssAtRest + RSS_MARGIN_BYTES);
      process.stdout.write(`# node-1 agent RSS ${mib(rssAtRest)} at rest, ${mib(rssBefore)} before this flood, ${mib(rssPeak)} at its peak, ${mib(rssAfter)} after (margin ${mib(RSS_MARGIN_BYTES)}); reclaims: ${reclaims(logFrom).join(', ')}\n`);
      assert.ok(rssAfter <= rssAtRest + RSS_MARGIN_BYTES, `RSS came back to ${mib(rssAfter)} (at rest ${mib(rssAtRest)}, margin ${mib(RSS_MARGIN_BYTES)})`);
      await assertAccounting(s, name, 'after the tunnel flood');
    } finally {
      stopAll();
      for (const l of loops) l.stop();
    }
  });
});
