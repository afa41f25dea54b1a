// close() and drain(): stop accepting, let open connections finish up to a deadline, then
// reset them; a restarted agent binds beside the old one (SO_REUSEPORT) and takes the new
// connections while the old one drains.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';

import { InboundTunnel } from '../../../src/proxy/inbound-tunnel.ts';
import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { allowAll, closure, exchange, testCredentials, until } from './harness.ts';
import { twoNodes, type TwoNodes } from './two-nodes.ts';

function records(n: TwoNodes, reporter: string): unknown[] {
  return n.logLines.filter((l) => l.msg === 'connection' && l.reporter === reporter).map((l) => l.flags);
}

function refused(address: { address: string; port: number }): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: address.address, port: address.port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

test('outbound drain: finished connections end cleanly, the rest are reset at the deadline, new ones are refused', async (t) => {
  const n = await twoNodes(t);
  const quick = await n.dial();
  const slow = await n.dial();
  quick.write('a');
  slow.write('b');
  await until(() => n.outbound.connections === 2 && n.pool.stats().streams === 2, 3000, 'two connections');
  const slowClosed = closure(slow);
  const t0 = Date.now();
  const drained = n.outbound.drain(400);
  assert.equal(await refused(n.outboundAddress), 'ECONNREFUSED');
  assert.equal((await exchange(quick, Buffer.from('done'))).toString(), 'adone');
  await drained;
  assert.ok(Date.now() - t0 >= 350, 'drain waited for the deadline');
  assert.equal(await slowClosed, 'ECONNRESET');
  await until(() => records(n, 'source').length === 2, 3000, 'records');
  assert.deepEqual(records(n, 'source').sort(), [ResponseFlags.OK, ResponseFlags.DRAINED].sort());
  assert.equal(n.outbound.connections, 0);
});

test('outbound drain returns at once when nothing is open; close() only stops accepting', async (t) => {
  const n = await twoNodes(t);
  const open = await n.dial();
  open.write('x');
  await until(() => n.outbound.connections === 1, 3000, 'connection');
  await n.outbound.close();
  await n.outbound.close();
  assert.equal(await refused(n.outboundAddress), 'ECONNREFUSED');
  assert.equal((await exchange(open, Buffer.from('y'))).toString(), 'xy');
  const t0 = Date.now();
  await n.outbound.drain(5000);
  assert.ok(Date.now() - t0 < 1000);
});

test('a new agent binds beside the draining one; GOAWAY moves new connections to it', async (t) => {
  const n = await twoNodes(t);
  const old = await n.dial();
  old.write('1');
  await until(() => n.inbound.stats().streams === 1, 3000, 'stream on the old agent');

  const successor = new InboundTunnel(
    { mesh: n.mesh, credentials: testCredentials([n.server.identity]), authorize: allowAll, observer: n.telemetry },
    { nodeName: 'b', host: n.inboundAddress.address, port: n.inboundAddress.port, reusePort: true },
  );
  t.after(() => successor.destroy());
  assert.equal((await successor.listen()).port, n.inboundAddress.port);

  const oldClosed = closure(old);
  const draining = n.inbound.drain(500);
  const fresh = await n.dial();
  assert.equal((await exchange(fresh, Buffer.from('new'))).toString(), 'new');
  assert.equal(successor.stats().sessions, 1, 'the new connection went to the new agent');
  await draining;
  assert.equal(await oldClosed, 'ECONNRESET', 'the long-lived connection was reset at the deadline');
  await until(() => records(n, 'destination').length === 2, 3000, 'records');
  assert.deepEqual(records(n, 'destination').sort(), [ResponseFlags.OK, ResponseFlags.DRAINED].sort());
});
