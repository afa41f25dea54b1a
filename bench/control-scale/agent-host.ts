// One process of the scale benchmark's agents: hundreds of lightweight agents (the real
// protocol, no config kept) and, optionally, a few full ones (a real ControlClient with the
// agent's validator, decoder and MeshState, timed), driven over IPC by the benchmark. For
// each change the benchmark announces (a service that must come to list a pod), it reports
// when every agent here holds it.

import { ControlClient } from '../../src/control/client.ts';
import type { ControlResource } from '../../src/control/resource.ts';
import { decodeAgentResources, validateAgentResource } from '../../src/app/control.ts';
import { meshStateFromContent } from '../../src/model/state.ts';
import { LightAgent } from './light-agent.ts';
import type { HostReport, HostRequest, HostMessage, Arrival } from './messages.ts';

const TRUST_DOMAIN = 'cluster.local';

interface Expectation {
  readonly id: number;
  readonly key: string;
  /** Per agent of this host: received yet. */
  readonly seen: Uint8Array;
  count: number;
  first: number;
  last: number;
}

const send = (m: HostMessage): void => void process.send?.(m);
const now = (): number => performance.timeOrigin + performance.now();

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? NaN : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);
}

async function run(start: Extract<HostRequest, { type: 'start' }>): Promise<void> {
  const light = start.light.map((n) => new LightAgent(n.node));
  const agents = light.length + start.full.length;
  const pending = new Map<string, Expectation[]>();
  const open = new Map<number, Expectation>();
  let phase: 'sync' | 'churn' | 'idle' = 'sync';
  const stats = {
    syncBytes: 0, syncBodyBytes: 0, syncResources: 0, churnBytes: 0, churnBodyBytes: 0, churnResponses: 0, churnResources: 0, errors: 0,
    firstError: undefined as string | undefined, syncedAt: [] as number[], fullApplyMs: [] as number[], fullFirstApplyMs: [] as number[],
    fullCpuMs: 0, churnCpuStart: 0,
  };
  const arrive = (e: Expectation, agent: number, at: number): void => {
    if (e.seen[agent] === 1) return;
    e.seen[agent] = 1;
    e.count++;
    e.first = Math.min(e.first, at);
    e.last = Math.max(e.last, at);
    if (e.count < agents) return;
    open.delete(e.id);
    const list = pending.get(e.key) ?? [];
    list.splice(list.indexOf(e), 1);
    if (list.length === 0) pending.delete(e.key);
    done.push({ id: e.id, count: e.count, first: e.first, last: e.last });
  };
  const done: Arrival[] = [];
  const synced = (at: number): void => {
    stats.syncedAt.push(at);
    if (stats.syncedAt.length === agents) send({ type: 'synced' });
  };
  const flush = setInterval(() => {
    if (done.length > 0) send({ type: 'arrived', items: done.splice(0) });
  }, 200);
  flush.unref();

  process.on('message', (raw) => {
    const m = raw as HostRequest;
    if (m.type === 'expect') {
      const e: Expectation = { id: m.id, key: m.key, seen: new Uint8Array(agents), count: 0, first: Infinity, last: -Infinity };
      const list = pending.get(m.key);
      if (list === undefined) pending.set(m.key, [e]);
      else list.push(e);
      open.set(m.id, e);
    } else if (m.type === 'phase') {
      phase = m.phase;
      if (m.phase === 'churn') stats.churnCpuStart = cpuMs();
    } else if (m.type === 'report') {
      const applies = [...stats.fullApplyMs].sort((a, b) => a - b);
      const report: HostReport = {
        agents, syncBytes: stats.syncBytes, syncBodyBytes: stats.syncBodyBytes, syncResources: stats.syncResources,
        churnBytes: stats.churnBytes, churnBodyBytes: stats.churnBodyBytes, churnResponses: stats.churnResponses, churnResources: stats.churnResources,
        errors: stats.errors, firstError: stats.firstError, syncedAt: stats.syncedAt,
        unfinished: [...open.values()].map((e) => ({ id: e.id, count: e.count, first: e.first, last: e.last })),
        full: start.full.length === 0 ? undefined : {
          agents: start.full.length, applies: applies.length, applyP50Ms: quantile(applies, 0.5), applyP99Ms: quantile(applies, 0.99), applyMaxMs: applies.at(-1) ?? NaN,
          firstApplyMs: stats.fullFirstApplyMs, churnCpuMs: cpuMs() - stats.churnCpuStart,
        },
      };
      send({ type: 'report', report });
    } else if (m.type === 'stop') {
      for (const a of light) a.close();
      void Promise.all(fullClients.map((c) => c.close())).finally(() => process.exit(0));
    }
  });

  // Full agents: what a real agent does with each config (decode, index), timed.
  const fullClients = start.full.map((n, i) => {
    const index = light.length + i;
    let first = true;
    return new ControlClient({
      address: start.address, node: n.node, trustDomain: TRUST_DOMAIN, trustBundlePem: start.caPem, bootstrapToken: () => n.token,
      validate: validateAgentResource, backoff: { initialMs: 200, maxMs: 2_000 },
      onConfig: (resources: ReadonlyMap<string, ControlResource>) => {
        const t0 = performance.now();
        const { decoded } = decodeAgentResources(resources, TRUST_DOMAIN);
        meshStateFromContent(decoded.content);
        const ms = performance.now() - t0;
        if (first) {
          first = false;
          stats.fullFirstApplyMs.push(ms);
          synced(now());
        } else {
          stats.fullApplyMs.push(ms);
        }
        const at = now();
        for (const [key, list] of pending) if (resources.has(key)) for (const e of [...list]) arrive(e, index, at);
      },
    });
  });

  let started = 0;
  const queue = [...light.keys()];
  const startOne = async (): Promise<void> => {
    for (;;) {
      const i = queue.shift();
      if (i === undefined) return;
      const agent = light[i];
      const token = (start.light[i] as { token: string }).token;
      await agent.start(start.address, start.caPem, token, {
        onResponse: (r, at) => {
          if (phase === 'sync') {
            stats.syncBytes += r.bytes;
            stats.syncBodyBytes += r.bodyBytes;
            stats.syncResources += r.resources.length;
          } else if (phase === 'churn') {
            stats.churnBytes += r.bytes;
            stats.churnBodyBytes += r.bodyBytes;
            stats.churnResponses++;
            stats.churnResources += r.resources.length;
          }
          if (pending.size === 0) return;
          for (const res of r.resources) {
            if (res.type !== 'endpoint') continue;
            const list = pending.get(`endpoint/${res.name}`);
            if (list !== undefined) for (const e of [...list]) arrive(e, i, at);
          }
        },
        onSynced: (at) => synced(at),
        onError: (err) => {
          stats.errors++;
          stats.firstError ??= err instanceof Error ? err.message : String(err);
        },
      });
      started++;
    }
  };
  const t0 = cpuMs();
  for (const c of fullClients) c.start();
  await Promise.all(Array.from({ length: start.concurrency }, () => startOne()));
  send({ type: 'started', agents: started + fullClients.length, cpuMs: cpuMs() - t0 });
  if (agents === 0) send({ type: 'synced' });
}

process.once('message', (raw) => {
  const m = raw as HostRequest;
  if (m.type !== 'start') throw new Error(`expected start, got ${m.type}`);
  run(m).catch((err: unknown) => {
    send({ type: 'failed', error: err instanceof Error ? err.stack ?? err.message : String(err) });
    process.exit(1);
  });
});
