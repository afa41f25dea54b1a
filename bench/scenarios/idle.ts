// 5. Idle connections: open N connections through the path and hold them, then read the
// proxies' RSS; (held RSS - RSS before) / N / proxies is the memory one idle proxied
// connection costs one proxy. The holder (tools/holder.ts) runs with a raised fd limit and
// stops by itself; the server pod is checked to really hold N connections first.

import { setTimeout as sleep } from 'node:timers/promises';
import { PORTS } from '../cluster.ts';
import { HOLDER } from '../servers.ts';
import { failure, runTool, startTool } from '../tools/exec.ts';
import { rssBytes } from '../tools/procstat.ts';
import type { Placement } from '../../src/sim/processes.ts';
import type { Scenario } from './types.ts';

const KIB = 1024;
const MAX_WAIT_MS = 180_000;
const STALL_MS = 5000;

interface HoldReport {
  opened: number;
  failed: number;
  firstError?: string;
  ms: number;
}

/** Established connections on the server pod's holder port. */
async function heldAtServer(server: Placement): Promise<number> {
  const r = await runTool(server, ['ss', '-Htn', 'state', 'established', `( sport = :${PORTS.hold} )`], 10_000);
  if (r.status !== 0) throw new Error(failure('ss', r));
  return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
}

export const idle: Scenario = {
  id: 'idle',
  title: 'Idle connections held through the path',
  method: 'tools/holder.ts opens N TCP connections (fd limit raised with prlimit) and holds them; proxy RSS (VmRSS of the process trees) before and while held',
  variants: ['same-node', 'cross-node'],
  once: true,
  metrics: [
    { id: 'kib_per_conn_per_proxy', label: 'RSS per idle connection per proxy', unit: 'KiB', better: 'lower', proxiesOnly: true },
    { id: 'held', label: 'connections held at the server', unit: 'conn', better: 'higher' },
  ],
  run: async (ctx, route) => {
    const n = ctx.options.idleConnections;
    const t = route.target('hold');
    const pids = route.proxyPids();
    const before = rssBytes(pids);
    const holdS = 60 + Math.ceil((n / 1000) * 20) + MAX_WAIT_MS / 1000 + Math.ceil(ctx.options.idleReadAfterMs / 1000);
    const holder = startTool(route.client, [
      'taskset', '-c', ctx.options.loadCpu, 'prlimit', `--nofile=${ctx.options.fdLimit}:${ctx.options.fdLimit}`, process.execPath, HOLDER, 'hold', t.host, String(t.port), String(n), String(holdS),
    ], (holdS + 10) * 1000);
    try {
      const report = await new Promise<HoldReport>((resolve, reject) => {
        let text = '';
        const onData = (b: Buffer): void => {
          text += b.toString();
          const line = text.split('\n').find((l) => l.startsWith('WEFT_HOLD '));
          if (line !== undefined) resolve(JSON.parse(line.slice('WEFT_HOLD '.length)) as HoldReport);
        };
        holder.stdout?.on('data', onData);
        holder.done.then((r) => reject(new Error(failure('holder', r))), reject);
      });
      if (report.opened === 0) throw new Error(`no connection opened (${report.failed} failed: ${report.firstError ?? '?'})`);
      // Proxies connect upstream after accepting (across nodes through HAProxy: one TLS handshake
      // each, a few hundred per second on a busy core): wait while the server's count grows.
      let held = await heldAtServer(route.server);
      let progressAt = Date.now();
      const deadline = Date.now() + MAX_WAIT_MS;
      while (held < report.opened && Date.now() < deadline && Date.now() - progressAt < STALL_MS) {
        await sleep(500);
        const now = await heldAtServer(route.server);
        if (now > held) progressAt = Date.now();
        held = now;
      }
      await sleep(ctx.options.idleReadAfterMs);
      const during = rssBytes(pids);
      const values: Record<string, number> = { held };
      if (route.proxyCount > 0) values.kib_per_conn_per_proxy = Math.max(0, during - before) / KIB / report.opened / route.proxyCount;
      const notes: string[] = [];
      if (report.failed > 0) notes.push(`${report.failed} of ${n} connections failed to open (${report.firstError ?? '?'})`);
      if (held < report.opened) notes.push(`the server held ${held} of ${report.opened} opened connections`);
      if (ctx.options.idleReadAfterMs !== ctx.options.settleMs) notes.push(`RSS read ${ctx.options.idleReadAfterMs / 1000} s after every connection was up (--idle-read-after)`);
      return { values, notes };
    } finally {
      holder.endInput();
      const r = await Promise.race([holder.done, sleep(5000).then(() => undefined)]);
      if (r === undefined) holder.kill();
      await holder.done;
      // The next run's baseline needs the proxies to have let go of every connection.
      const deadline = Date.now() + 15_000;
      while (await heldAtServer(route.server) > 0 && Date.now() < deadline) await sleep(250);
      await sleep(ctx.options.settleMs);
    }
  },
};
