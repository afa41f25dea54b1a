// The runtime's registry of open connections: every listener's connections are in it with
// the facts a policy re-check needs; ending one resets both sides and its record carries the
// reason; an accept gate refuses at once and is told when admitted connections end.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConnectionRegistry, type ConnectionEnding, type ConnectionGate, type LiveConnection } from '../../../src/proxy/connection-registry.ts';
import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { closure, exchange, until } from './harness.ts';
import { twoNodes } from './two-nodes.ts';

function recordsOf(lines: Record<string, unknown>[], reporter: string): Record<string, unknown>[] {
  return lines.filter((l) => l.msg === 'connection' && l.reporter === reporter);
}

test('registry: both sides of a tunnelled connection are listed with what policy checked', async (t) => {
  const n = await twoNodes(t);
  const s = await n.dial();
  assert.equal((await exchange(s, Buffer.from('ping'))).length, 4);
  const s2 = await n.dial();
  s2.write('x');
  await until(() => n.connections.size === 2 && n.connections.connections().every((c) => c.authorized.length === 1), 3000, 'two entries');
  const [out, inn] = [...n.connections.connections()].sort((a, b) => a.listener.localeCompare(b.listener)).reverse();
  assert.equal(out?.listener, 'outbound');
  assert.equal(out?.reporter, 'source');
  assert.equal(out?.sourceIp, n.client.ip);
  assert.equal(out?.authorized[0]?.sourcePrincipal, n.client.identity);
  assert.equal(out?.authorized[0]?.destinationWorkload.key, n.server.key);
  assert.equal(out?.authorized[0]?.destinationPort, n.echo.address.port);
  assert.equal(inn?.listener, 'inbound-tunnel');
  assert.equal(inn?.reporter, 'destination');
  // The Forwarded client, not the peer agent's address.
  assert.equal(inn?.sourceIp, n.client.ip);
  assert.equal(inn?.authorized[0]?.sourcePrincipal, n.client.identity);
  assert.equal(inn?.authorized[0]?.sourceNamespace, 'shop');
  assert.ok((out?.id ?? 0) < (inn?.id ?? 0), 'ids in accept order');
  s2.destroy();
  await until(() => n.connections.size === 0, 3000, 'entries removed when the connections end');
});

test('registry: ending a connection with a reason resets both ends and records the reason once', async (t) => {
  const n = await twoNodes(t);
  const s = await n.dial();
  // One echoed byte: both sides are spliced by now.
  const echoed = new Promise((resolve) => s.once('data', resolve));
  s.write('a');
  await echoed;
  assert.equal(n.connections.size, 2);
  const closed = closure(s);
  const ending: ConnectionEnding = { flags: ResponseFlags.DENIED, detail: 'policy re-check: shop/deny-all' };
  const ended = await n.connections.endWhere((c) => c.listener === 'inbound-tunnel' ? ending : undefined);
  assert.equal(ended, 1);
  await n.connections.endWhere((c) => c.listener === 'inbound-tunnel' ? { flags: 'X', detail: 'second reason loses' } : undefined);
  assert.equal(await closed, 'ECONNRESET', 'the client sees a reset');
  await until(() => recordsOf(n.logLines, 'destination').length === 1 && recordsOf(n.logLines, 'source').length === 1, 3000, 'records');
  const dst = recordsOf(n.logLines, 'destination')[0];
  assert.equal(dst?.flags, ResponseFlags.DENIED);
  assert.equal(dst?.detail, ending.detail);
  // The source side saw its upstream reset.
  assert.equal(recordsOf(n.logLines, 'source')[0]?.flags, ResponseFlags.UPSTREAM_RESET);
  assert.equal(n.connections.size, 0);
});

test('registry: an accept gate refuses at once, and is told exactly once when admitted connections end', async (t) => {
  const admitted: LiveConnection[] = [];
  const released: number[] = [];
  let allow = true;
  const gate: ConnectionGate = {
    admit: (c) => {
      if (!allow) return { flags: 'OVERLOAD', detail: `too many connections from ${c.sourceIp}` };
      admitted.push(c);
      return undefined;
    },
    released: (c) => released.push(c.id),
  };
  const n = await twoNodes(t, { outboundGate: gate });
  const ok = await n.dial();
  assert.equal((await exchange(ok, Buffer.from('hi'))).toString(), 'hi');
  await until(() => released.length === 1, 3000, 'released');
  assert.deepEqual(released, [admitted[0]?.id]);

  allow = false;
  // Refused at accept: the reset may beat the client's own connect callback.
  const refused = await n.dial().then(closure, (err: NodeJS.ErrnoException) => err.code);
  assert.equal(refused, 'ECONNRESET');
  await until(() => n.connections.size === 0, 3000, 'the refused connection gone');
  // A refusal has no record of its own (a flood must not flood the access log); the gate's
  // observer counts it (connection-caps.test.ts).
  assert.equal(recordsOf(n.logLines, 'source').length, 1);
  assert.equal(n.pool.stats().streams, 0, 'a refused connection never reached the tunnel');
  assert.deepEqual(released, [admitted[0]?.id], 'refused connections are not released');
  assert.equal(n.connections.size, 0);
});

test('registry: endWhere judges every connection at once, then ends them a batch per event-loop turn; one that ended meanwhile is left alone', async () => {
  const r = new ConnectionRegistry();
  const cs = Array.from({ length: 10 }, (_, i) => r.add('outbound', `10.0.0.${i}`, 0));
  let judged = 0;
  const ending: ConnectionEnding = { flags: ResponseFlags.DENIED, detail: 'closed by a policy change' };
  const done = r.endWhere((c) => {
    judged += 1;
    return c.sourceIp === '10.0.0.9' ? undefined : ending;
  }, 4);
  assert.equal(judged, 10, 'all judged before the first one ends');
  assert.deepEqual(cs.map((c) => c.signal.aborted), [true, true, true, true, false, false, false, false, false, false], 'the first batch in this turn');
  r.delete(cs[5]); // ends by itself before its batch comes
  assert.equal(await done, 8, 'nine chosen, one of them gone meanwhile');
  assert.deepEqual(cs.map((c) => c.signal.aborted), [true, true, true, true, true, false, true, true, true, false]);
  assert.equal(cs[6]?.endedBy, ending);
  assert.equal(cs[0]?.signal.reason, cs[8]?.signal.reason, 'one shared abort reason, not one error per connection');
  assert.equal((cs[0]?.signal.reason as Error).name, 'AbortError');
});
