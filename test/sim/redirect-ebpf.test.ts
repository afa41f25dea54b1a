// eBPF capture on the real kernel: connect4/sockops on pod cgroups, getsockopt on the
// agent's, pinned per node; crash, adoption, reclaim and clean close.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { needsRoot } from '../support/root.ts';
import {
  Agent, attachedWeftPrograms, B_EXCLUDED_IP, buildTopology, curlFrom, destroyTopology, ensureBuilt, EXCLUDED_PORT,
  GATEWAY, mappedFrom, natRules, parseEcho, peerNameFrom, startEchoServer, target, timingSummary, VIP, type Topology,
} from './redirect-support.ts';

const PINS = (topo: Topology) => join('/sys/fs/bpf/weft', topo.id);

function pinnedProgIds(topo: Topology): number[] {
  return ['weft_connect4', 'weft_sockops', 'weft_getsockopt'].map((name) => {
    const r = spawnSync('bpftool', ['-j', 'prog', 'show', 'pinned', join(PINS(topo), 'progs', name)], { encoding: 'utf8' });
    return (JSON.parse(r.stdout) as { id: number }).id;
  });
}

test('eBPF capture: pods to the agent with their original destination, and nothing left behind', { timeout: 120_000 }, async (t) => {
  if (!needsRoot(t, ['bpftool', 'clang', 'make', 'ip', 'nsenter', 'curl'])) return;
  ensureBuilt();
  const topo = await buildTopology();
  t.after(() => destroyTopology(topo));
  const { a, b, c } = topo.pods;
  await startEchoServer(topo);
  const agents: Agent[] = [];
  t.after(() => { for (const line of timingSummary(agents)) t.diagnostic(line); });

  let agent = await Agent.start(topo, 'ebpf');
  agents.push(agent);
  await agent.call('enroll', { pod: target(a) });
  await agent.call('enroll', { pod: target(a) }); // idempotent

  await t.test('pod to pod is captured and relayed, with the original destination', async () => {
    const echo = parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`));
    assert.equal(echo.remote, GATEWAY, 'b saw the agent, not a');
    assert.deepEqual(agent.captured(), [{ event: 'captured', client: a.ip, original: { address: b.ip, port: 8080 } }],
      'exactly one capture: the agent\'s own connection to b was not captured again');
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

  await t.test('a service VIP that routes nowhere is captured', async () => {
    agent.events.length = 0;
    const echo = parseEcho(await curlFrom(topo, a, `http://${VIP}/`));
    assert.equal(echo.server, 'b');
    assert.deepEqual(agent.captured(), [{ event: 'captured', client: a.ip, original: { address: VIP, port: 80 } }]);
  });

  await t.test('connection records are deleted when connections close', async () => {
    const entries = (map: string) => (JSON.parse(spawnSync('bpftool', ['-j', 'map', 'dump', 'pinned', join(PINS(topo), 'maps', map)], { encoding: 'utf8' }).stdout) as unknown[]).length;
    // Every capture so far has finished; the client side reaches TCP_CLOSE once both ends closed.
    for (let i = 0; i < 50 && entries('weft_conns') + entries('weft_by_cookie') > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(entries('weft_conns'), 0);
    assert.equal(entries('weft_by_cookie'), 0);
  });

  await t.test('excluded ports and CIDRs go direct', async () => {
    agent.events.length = 0;
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:${EXCLUDED_PORT}/`)).remote, a.ip);
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${B_EXCLUDED_IP}:8080/`)).remote, a.ip);
    assert.deepEqual(agent.captured(), []);
  });

  await t.test('the agent\'s own connections are not captured', async () => {
    agent.events.length = 0;
    const body = await agent.call('dial', { address: b.ip, port: 8080 });
    assert.equal((JSON.parse(String(body)) as { remote: string }).remote, GATEWAY);
    assert.deepEqual(agent.captured(), []);
  });

  await t.test('inbound: a connection to an enrolled pod that did not come through the mesh goes to the agent; the agent\'s own do not', async () => {
    agent.events.length = 0;
    await agent.call('enroll', { pod: target(b) });
    assert.equal(await agent.call('inbound', { podId: 'default/b' }), 'listening');
    assert.deepEqual(readdirSync(join(PINS(topo), 'links')).sort(), ['default%2Fa', 'default%2Fb'], 'an sk_lookup link per enrolled pod\'s namespace, pinned');
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
    assert.deepEqual(readdirSync(join(PINS(topo), 'links')), ['default%2Fa'], 'b unlinked');
    assert.equal(parseEcho(await curlFrom(topo, c, `http://${b.ip}:8080/`)).remote, c.ip, 'released: c reaches b directly');
  });

  await t.test('an unenrolled pod goes direct; enrolling it later captures it; unenrolling detaches', async () => {
    agent.events.length = 0;
    assert.equal(parseEcho(await curlFrom(topo, c, `http://${b.ip}:8080/`)).remote, c.ip);
    assert.deepEqual(agent.captured(), []);

    await agent.call('enroll', { pod: target(c) });
    assert.deepEqual(await agent.call('enrolled'), ['default/a', 'default/c']);
    assert.equal(parseEcho(await curlFrom(topo, c, `http://${b.ip}:8080/`)).remote, GATEWAY);
    assert.deepEqual(agent.captured(), [{ event: 'captured', client: c.ip, original: { address: b.ip, port: 8080 } }]);

    await agent.call('unenroll', { podId: 'default/c' });
    await agent.call('unenroll', { podId: 'default/c' }); // idempotent
    assert.deepEqual(attachedWeftPrograms(c.cgroup), []);
    assert.equal(parseEcho(await curlFrom(topo, c, `http://${b.ip}:8080/`)).remote, c.ip);
    assert.equal(agent.captured().length, 1);
  });

  await t.test('SIGKILL keeps capture closed; a restarted agent adopts the pins and its pods', async () => {
    const ids = pinnedProgIds(topo);
    await agent.kill();
    const down = await curlFrom(topo, a, `http://${b.ip}:8080/`);
    assert.equal(down.exit, 7, 'with no agent, a captured pod fails closed (connection refused) instead of bypassing the mesh');

    agent = await Agent.start(topo, 'ebpf');
    agents.push(agent);
    assert.deepEqual(await agent.call('enrolled'), ['default/a']);
    assert.deepEqual(pinnedProgIds(topo), ids, 'the same programs, adopted rather than reloaded');
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${VIP}/`)).remote, GATEWAY);
    assert.deepEqual(agent.captured().map((e) => e.original), [{ address: VIP, port: 80 }]);
  });

  await t.test('close with keepCapture, then a new agent carries on', async () => {
    await agent.stop(true);
    assert.ok(existsSync(PINS(topo)));
    assert.notDeepEqual(attachedWeftPrograms(a.cgroup), []);
    agent = await Agent.start(topo, 'ebpf');
    agents.push(agent);
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, GATEWAY);
  });

  await t.test('reclaimNode after a crash removes pins and attachments', async () => {
    await agent.kill();
    const reclaim = await Agent.start(topo, 'ebpf', 'reclaim');
    await reclaim.exited();
    assert.equal(existsSync(PINS(topo)), false);
    assert.deepEqual(attachedWeftPrograms(topo.cgroupRoot), []);
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, a.ip, 'capture is gone');
  });

  await t.test('switching --mode after a crash removes the other mode\'s capture', async () => {
    agent = await Agent.start(topo, 'ebpf');
    agents.push(agent);
    await agent.call('enroll', { pod: target(a) });
    await agent.kill();
    agent = await Agent.start(topo, 'iptables');
    agents.push(agent);
    assert.equal(existsSync(PINS(topo)), false, 'eBPF pins reclaimed by the iptables agent');
    assert.deepEqual(attachedWeftPrograms(topo.cgroupRoot), []);
    await agent.call('enroll', { pod: target(a) });
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, GATEWAY);
    assert.deepEqual(agent.captured().map((e) => e.original), [{ address: b.ip, port: 8080 }]);
    await agent.kill();
    assert.match(natRules(topo), /WEFT-PREROUTING/);
  });

  await t.test('close removes every pin and attachment, and the programs are unloaded', async () => {
    agent = await Agent.start(topo, 'ebpf');
    agents.push(agent);
    assert.doesNotMatch(natRules(topo), /WEFT/, 'the iptables agent\'s chains were removed');
    assert.deepEqual(await agent.call('enrolled'), []);
    await agent.call('enroll', { pod: target(a) });
    await agent.call('enroll', { pod: target(c) });
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, GATEWAY);
    const ids = pinnedProgIds(topo);
    await agent.stop();
    assert.equal(existsSync(PINS(topo)), false);
    assert.deepEqual(attachedWeftPrograms(topo.cgroupRoot), []);
    for (const id of ids) {
      assert.notEqual(spawnSync('bpftool', ['prog', 'show', 'id', String(id)]).status, 0, `program ${id} unloaded`);
    }
    assert.equal(parseEcho(await curlFrom(topo, a, `http://${b.ip}:8080/`)).remote, a.ip);
  });
});
