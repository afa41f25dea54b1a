// Revocation an operator can use (issue 9, point 6), end to end on a 3-node simulated mesh:
// `weft control revoke --node node-1`, run where the control plane runs (its admin endpoint
// is loopback-only), puts node-1's certificates on the CRL and pushes it at once. Tunnels
// that used them close (a connection held open from node-1 to node-2 is cut), node-1's
// agent can renew nothing and fetch no config, new tunnels from it are refused; node-3's
// connection to node-2 keeps going and new ones work.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { simCluster, uniqueName } from '../support/sim.ts';
import { curl, escape, inPodFast, startInPod, until, type InPod, type Pod } from './capture-support.ts';
import { agentLog, agentMetrics, inNetns, node, sample } from './mesh-support.ts';

const HOLDER = join(import.meta.dirname, 'holder.py');
const WEFT = join(import.meta.dirname, '..', '..', 'bin', 'weft');

function events(h: InPod): { event: string; n?: number; error?: string; answer?: string }[] {
  return h.lines.map((l) => JSON.parse(l) as { event: string; n?: number; error?: string; answer?: string });
}

test('weft control revoke --node: its tunnels close, its renewals fail; other nodes go on', { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'python3'])) return;
  const name = uniqueName('rv');
  const s = await simCluster(t, name, ['--nodes', '3', '--pods-per-node', '2']);
  const pod = (n: string): Pod => s.pods.find((p) => p.name === n) ?? assert.fail(`pod ${n}`);
  const target = pod('echo-2-0');
  const node2 = node(s, 'node-2');
  const held = (from: Pod): InPod => {
    const h = startInPod(from, ['python3', HOLDER, target.ip, '8080', '180']);
    t.after(() => h.stop());
    return h;
  };
  const fromNode1 = held(pod('echo-1-0'));
  const fromNode3 = held(pod('echo-3-0'));
  for (const h of [fromNode1, fromNode3]) await h.waitLine(/"event": "open"/, 20_000);
  assert.match(events(fromNode1)[0]?.answer ?? '', new RegExp(`hello from echo-2-0 .* client=${escape(node2.bridgeIp)}:`), 'through the mesh to node-2');

  const refusedBefore = sample(await agentMetrics(s, 'node-2'), 'weft_tunnel_handshake_failures_total', { reason: 'revoked' });
  const refusedBefore1 = sample(await agentMetrics(s, 'node-1'), 'weft_tunnel_handshake_failures_total', { reason: 'revoked' });
  const caDir = `/run/weft/sim/${name}/mesh/ca`;
  const revoked = await inNetns(`weft-${name}-underlay`, [WEFT, 'control', 'revoke', '--node', 'node-1', '--ca-dir', caDir], 30_000);
  assert.equal(revoked.status, 0, revoked.stderr);
  assert.match(revoked.stdout, /^revoked node node-1: [1-9]\d* certificate\(s\) on the CRL .*; node node-1 refused from now on \(1 config stream\(s\) ended\)\n$/);
  const revokedAt = Date.now();

  await t.test('the tunnel that used node-1\'s certificate is closed at once', async () => {
    const closed = await until('node-1\'s held connection to end', 10_000, () => events(fromNode1).find((e) => e.event === 'closed'));
    t.diagnostic(`closed ${Date.now() - revokedAt} ms after the revocation: ${JSON.stringify(closed)}`);
    assert.ok(Date.now() - revokedAt < 10_000);
    // Under L7 the keep-alive client gets a 503 for its next request (see below), else a reset.
    assert.match(closed.error ?? '', /^(HTTP\/1\.1 503 |ConnectionResetError|eof)/, 'the request fails clearly');
    // Both agents get the CRL; whichever applies it first ends the session and counts it.
    const endedBy = async (n: string): Promise<number> => sample(await agentMetrics(s, n), 'weft_tunnel_handshake_failures_total', { reason: 'revoked' });
    const ended = (await endedBy('node-2')) - refusedBefore + (await endedBy('node-1')) - refusedBefore1;
    assert.ok(ended >= 1, 'node-1 or node-2 counted the session it ended (reason revoked)');
  });

  await t.test('node-3\'s connection to node-2 keeps going, and new ones work', async () => {
    const ticks = events(fromNode3).filter((e) => e.event === 'tick').length;
    await until('node-3\'s holder to keep answering', 10_000, () => (events(fromNode3).filter((e) => e.event === 'tick').length > ticks + 2 ? true : undefined));
    assert.equal(events(fromNode3).find((e) => e.event === 'closed'), undefined, 'never cut');
    const fresh = await curl(pod('hello-3-1'), `http://${target.ip}:8080/`);
    assert.equal(fresh.status, 0, fresh.stderr);
    assert.match(fresh.body, new RegExp(`^hello from echo-2-0 .* client=${escape(node2.bridgeIp)}:`));
  });

  await t.test('node-1 can renew nothing and fetch no config; its new tunnels are refused', async () => {
    const log1 = agentLog(name, 'node-1');
    await until('node-1\'s agent to be refused by the control plane', 20_000, () => (/revoked by an operator/.test(readFileSync(log1, 'utf8')) ? true : undefined));
    const text = readFileSync(log1, 'utf8');
    assert.ok(text.split('\n').some((l) => l.includes('certificate request failed') && /WEFT_CONTROL_REVOKED|revoked by an operator/.test(l)), 'its workload certificates are not renewed');
    assert.ok(text.split('\n').some((l) => /config stream|node certificate/.test(l) && l.includes('revoked by an operator')), 'nor its config');
    // Under L7 (HTTP/1.1 here) node-1's agent answers the request itself once the tunnel is
    // refused: 503, as Envoy-based meshes answer ("upstream connect error ..."). That is the
    // intended failure: the client's connection to its own node's proxy is sound, the request
    // fails clearly and each further request on a keep-alive connection fails the same way,
    // rather than a reset the client might take for a network fault. Opaque TCP gets a reset.
    const fresh = await inPodFast(pod('hello-1-1'), ['curl', '-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${target.ip}:8080/`]);
    assert.ok(fresh.status !== 0 || fresh.stdout === '503', `a new tunnel from node-1 must not work: curl ${fresh.status} ${fresh.stdout} ${fresh.stderr}`);
  });
});
