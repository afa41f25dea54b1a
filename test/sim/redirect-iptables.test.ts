// iptables capture on the real kernel: REDIRECT in the node netns's nat table (WEFT-*
// chains), SO_ORIGINAL_DST from conntrack; crash, adoption, reclaim and clean close.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { needsRoot } from '../support/root.ts';
import {
  Agent, B_EXCLUDED_IP, buildTopology, curlFrom, destroyTopology, ensureBuilt, EXCLUDED_PORT, GATEWAY, mappedFrom, natRules,
  parseEcho, peerNameFrom, startEchoServer, target, timingSummary, VIP, type Topology,
} from './redirect-support.ts';

function bridgeNetfilter(topo: Topology): string {
  return spawnSync('nsenter', [`--net=/run/netns/${topo.nodeNetns}`, 'cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'], { encoding: 'utf8' }).stdout.trim();
}

function setBridgeNetfilter(topo: Topology, value: string): void {
  const r = spawnSync('nsenter', [`--net=/run/netns/${topo.nodeNetns}`, 'sh', '-c', `echo ${value} > /proc/sys/net/bridge/bridge-nf-call-iptables`]);
  assert.equal(r.status, 0, String(r.stderr));
}

test('iptables capture: same contract as eBPF, rules only in WEFT chains, nothing left behind', { timeout: 120_000 }, async (t) => {
  if (!needsRoot(t, ['iptables-save', 'iptables-restore', 'ip', 'nsenter', 'curl'])) return;
  ensureBuilt();
  const topo = await buildTopology();
  t.after(() => destroyTopology(topo));
  const { a, b, c } = topo.pods;
  await startEchoServer(topo);
  const agents: Agent[] = [];
  t.after(() => { for (const line of timingSummary(agents)) t.diagnostic(line); });
  const rootRules = spawnSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }).stdout.replace(/^#.*\n/gm, '');
  const rootBridgeNf = readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8');

  // Start from "off" to show the agent turns bridge netfilter on in its own netns only.
  setBridgeNetfilter(topo, '0');
  let agent = await Agent.start(topo, 'iptables');
  agents.push(agent);
  assert.equal(bridgeNetfilter(topo), '1', 'bridged pod-to-pod frames must reach iptables');
  assert.equal(readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8'), rootBridgeNf, 'root netns untouched');
  await agent.call('enroll', { pod: target(a) });
  await agent.call('enroll', { pod: target(a) }); // idempotent
  assert.equal(natRules(topo).match(/weft-pod=default\/a/g)?.length, 1);

  await t.test('pod to pod (bridged) is captured, with the original destination from conntrack', async () => {
    const echo = parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`));
    assert.equal(echo.remote, GATEWAY);
    assert.deepEqual(agent.captured(), [{ event: 'captured', client: a.ip, original: { address: b.ip, port: 8080 } }]);
  });

  await t.test('the client still sees the address it dialled (getpeername)', async () => {
    agent.events.length = 0;
    assert.equal(await peerNameFrom(topo, a, VIP, 80), `${VIP}:80`);
    assert.equal(await peerNameFrom(topo, a, b.ip, 8080), `${b.ip}:8080`);
    assert.equal(agent.captured().length, 2, 'both connections were captured');
  });

  await t.test('a dual-stack AF_INET6 socket dialling a v4-mapped address is captured the same way', async () => {
    agent.events.length = 0;
    const viaVip = await mappedFrom(topo, a, VIP, 80);
    assert.equal(viaVip.peer, `::ffff:${VIP}:80`, 'getpeername still shows the address it dialled');
    assert.equal((JSON.parse(viaVip.body) as { remote: string }).remote, GATEWAY, 'b saw the agent');
    const direct = await mappedFrom(topo, a, b.ip, 8080);
    assert.equal(direct.peer, `::ffff:${b.ip}:8080`);
    assert.deepEqual(agent.captured(), [
      { event: 'captured', client: a.ip, original: { address: VIP, port: 80 } },
      { event: 'captured', client: a.ip, original: { address: b.ip, port: 8080 } },
    ]);
  });

  await t.test('a service VIP (routed) is captured', async () => {
    agent.events.length = 0;
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${VIP}/`)).server, 'b');
    assert.deepEqual(agent.captured(), [{ event: 'captured', client: a.ip, original: { address: VIP, port: 80 } }]);
  });

  await t.test('excluded ports and CIDRs go direct; the agent\'s own connections too', async () => {
    agent.events.length = 0;
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:${EXCLUDED_PORT}/`)).remote, a.ip);
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${B_EXCLUDED_IP}:8080/`)).remote, a.ip);
    const body = await agent.call('dial', { address: b.ip, port: 8080 });
    assert.equal((JSON.parse(String(body)) as { remote: string }).remote, GATEWAY);
    assert.deepEqual(agent.captured(), []);
  });

  await t.test('inbound: a connection to an enrolled pod that did not come through the mesh goes to the agent; the agent\'s own do not', async () => {
    agent.events.length = 0;
    await agent.call('enroll', { pod: target(b) });
    assert.equal(await agent.call('inbound', { podId: 'default/b' }), 'none');
    const fromOutside = parseEcho(await curlFrom(topo, c, `http://${b.ip}:8080/`));
    assert.equal(fromOutside.remote, GATEWAY, 'b saw the agent, not c');
    assert.deepEqual(agent.inbound(), [{ event: 'inbound', client: c.ip, original: { address: b.ip, port: 8080 } }], 'with the real client and the original destination');
    agent.events.length = 0;
    const own = await agent.call('dial', { address: b.ip, port: 8080 });
    assert.equal((JSON.parse(String(own)) as { remote: string }).remote, GATEWAY);
    assert.deepEqual(agent.inbound(), [], 'the agent\'s own connection (from the node\'s address) is not captured inbound');
    agent.events.length = 0;
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, GATEWAY);
    assert.deepEqual(agent.events.filter((e) => e.event === 'captured' || e.event === 'inbound').map((e) => e.event), ['captured'], 'a mesh pod\'s connection is captured once, as outbound');
    await agent.call('unenroll', { podId: 'default/b' });
    assert.equal(parseEcho(await curlFrom(topo, c, `http://${b.ip}:8080/`)).remote, c.ip, 'released: c reaches b directly');
  });

  await t.test('an unenrolled pod goes direct; enrolling captures it; unenrolling stops', async () => {
    agent.events.length = 0;
    assert.equal(parseEcho(await curlFrom(topo, c, `http://${b.ip}:8080/`)).remote, c.ip);
    await agent.call('enroll', { pod: target(c) });
    assert.deepEqual(await agent.call('enrolled'), ['default/a', 'default/c']);
    assert.equal(parseEcho(await curlFrom(topo, c, `http://${b.ip}:8080/`)).remote, GATEWAY);
    await agent.call('unenroll', { podId: 'default/c' });
    await agent.call('unenroll', { podId: 'default/c' });
    assert.doesNotMatch(natRules(topo), /default\/c/);
    assert.equal(parseEcho(await curlFrom(topo, c, `http://${b.ip}:8080/`)).remote, c.ip);
    assert.deepEqual(agent.captured().map((e) => e.client), [c.ip]);
  });

  await t.test('SIGKILL keeps capture closed; a restarted agent adopts the chains and its pods', async () => {
    await agent.kill();
    assert.equal((await curlFrom(topo, a, `http://${b.ip}:8080/`)).exit, 7, 'fails closed while no agent listens');
    agent = await Agent.start(topo, 'iptables');
    agents.push(agent);
    assert.deepEqual(await agent.call('enrolled'), ['default/a']);
    assert.equal(natRules(topo).match(/-j WEFT-PREROUTING/g)?.length, 1, 'one jump, not two');
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, GATEWAY);
  });

  await t.test('reclaimNode after a crash removes the chains', async () => {
    await agent.kill();
    const reclaim = await Agent.start(topo, 'iptables', 'reclaim');
    await reclaim.exited();
    assert.doesNotMatch(natRules(topo), /WEFT/);
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, a.ip);
  });

  await t.test('close removes every WEFT chain and the jump, and nothing else', async () => {
    // A rule of someone else's in the same table must survive.
    const other = spawnSync('nsenter', [`--net=/run/netns/${topo.nodeNetns}`, 'iptables', '-t', 'nat', '-A', 'PREROUTING', '-p', 'udp', '--dport', '9', '-j', 'RETURN']);
    assert.equal(other.status, 0);
    agent = await Agent.start(topo, 'iptables');
    agents.push(agent);
    await agent.call('enroll', { pod: target(a) });
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, GATEWAY);
    await agent.stop();
    const rules = natRules(topo);
    assert.doesNotMatch(rules, /WEFT/);
    assert.match(rules, /-A PREROUTING -p udp -m udp --dport 9 -j RETURN/);
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, a.ip);
  });

  const after = spawnSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }).stdout.replace(/^#.*\n/gm, '');
  assert.equal(after, rootRules, 'the root netns nat table is untouched');
});
