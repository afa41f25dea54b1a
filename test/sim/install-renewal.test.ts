// Two control-plane replicas from the rendered install, workload certificates living 60 s
// (`--control-args --workload-cert-ttl 60`, so agents renew every ~27 s): killing either
// replica breaks no connection and no renewal. Each agent's renewals go on against the
// survivor (weft_agent_certificate_requests_total{result="success"} grows after the kill,
// every served certificate stays unexpired), a connection spanning the kill and the renewals
// after it keeps every byte, and new connections keep working. ~90 s.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needsRoot } from '../support/root.ts';
import { INSTALL_MANIFEST, inPod, simCluster, uniqueName, weft, type SimStatus } from '../support/sim.ts';
import { agentMetrics, clientInPod, eventually, pod, sample } from './mesh-support.ts';

const TTL_S = 60;
type Status = SimStatus & { meshProcesses: Record<string, number> };

async function status(name: string): Promise<Status> {
  return JSON.parse((await weft(['sim', 'status', '--name', name, '--json'])).stdout) as Status;
}

/** Renewals so far and the earliest expiry of the node's served certificates (Unix s). */
async function certificates(s: SimStatus, node: string): Promise<{ ok: number; failed: number; soonest: number }> {
  const text = await agentMetrics(s, node);
  const expiries = text.split('\n').filter((l) => l.startsWith('weft_agent_certificate_expiry_timestamp_seconds{')).map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
  return {
    ok: sample(text, 'weft_agent_certificate_requests_total', { result: 'success' }),
    failed: sample(text, 'weft_agent_certificate_requests_total', { result: 'failure' }),
    soonest: expiries.length === 0 ? 0 : Math.min(...expiries),
  };
}

test('two control-plane replicas: killing either breaks no connection and no certificate renewal', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter'])) return;
  const name = uniqueName('ir');
  const s = await simCluster(t, name, ['--nodes', '2', '--pods-per-node', '2', '--install', INSTALL_MANIFEST, '--control-args', `--workload-cert-ttl ${TTL_S}`]);
  const client = pod(s, 'echo-1-0');
  const remote = pod(s, 'hello-2-1');
  const nodes = ['node-1', 'node-2'];

  for (const [dead, alive] of [['control/0', 'control/1'], ['control/1', 'control/0']] as const) {
    const before = await status(name);
    const counts = Object.fromEntries(await Promise.all(nodes.map(async (n) => [n, await certificates(before, n)] as const)));
    // A transfer across nodes that outlives the kill and the renewals after it.
    const slow = clientInPod(name, remote.name, 'slow-server', { port: 9001, bytesPerSecond: 20_000 });
    t.after(() => slow.stop());
    await slow.waitFor((l) => l.event === 'listening', 10_000, 'slow server');
    const download = inPod(name, client.name, ['curl', '-s', '-m', '60', '-o', '/dev/null', '-w', '%{size_download}', `http://${remote.ip}:9001/bytes/800000`], 70_000);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    process.kill(before.meshProcesses[dead] ?? 0, 'SIGKILL');
    const killedAt = Date.now() / 1000;

    // Every agent renews again after the kill, against the survivor.
    for (const n of nodes) {
      const renewed = await eventually(async () => {
        const c = await certificates(await status(name), n);
        return c.ok > (counts[n]?.ok ?? 0) ? c : undefined;
      }, (TTL_S + 10) * 1000, 1000);
      assert.ok(renewed !== undefined, `${n} renewed its certificates after ${dead} was killed (${JSON.stringify(counts[n])})`);
      assert.ok(renewed.soonest > Date.now() / 1000, `${n} serves no expired certificate (soonest expiry ${renewed.soonest})`);
      assert.ok(renewed.soonest > killedAt + TTL_S / 2, `${n}'s certificates were renewed after the kill (soonest expiry ${renewed.soonest}, kill at ${killedAt})`);
      t.diagnostic(`${dead} killed: ${n} renewals ${counts[n]?.ok ?? 0} -> ${renewed.ok}, failed ${counts[n]?.failed ?? 0} -> ${renewed.failed}`);
    }
    const d = await download;
    assert.equal(d.stdout, '800000', `the transfer spanning the kill of ${dead} and the renewals got every byte (${d.stderr})`);
    slow.stop();
    const r = await inPod(name, client.name, ['curl', '-s', '-m', '5', `http://${remote.ip}:8080/`]);
    assert.match(r.stdout, /hello from hello-2-1/, `new connections after ${dead} was killed and the certificates renewed on ${alive}`);
    const back = await weft(['sim', 'mesh', '--name', name, 'start', dead], { timeoutMs: 120_000 });
    assert.equal(back.status, 0, back.stderr);
  }
});
