// Pooling: many connections share one session up to the stream cap, idle sessions close,
// a silently broken session is replaced without failing the next connection, GOAWAY moves
// new connections to a new session.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';

import { exchange, until } from './harness.ts';
import { twoNodes } from './two-nodes.ts';

test('many connections share one session', async (t) => {
  const n = await twoNodes(t);
  const sockets = await Promise.all(Array.from({ length: 20 }, () => n.dial()));
  const payloads = sockets.map(() => randomBytes(50_000));
  const backs = await Promise.all(sockets.map((s, i) => exchange(s, payloads[i] ?? Buffer.alloc(0))));
  backs.forEach((b, i) => assert.ok(b.equals(payloads[i] ?? Buffer.alloc(0)), `connection ${i} corrupted`));
  assert.equal(n.pool.stats().sessions, 1);
  assert.equal(n.inbound.stats().sessions, 1);
});

test('past the stream cap a second session opens', async (t) => {
  const n = await twoNodes(t, { pool: { tuning: { maxStreamsPerSession: 3 } } });
  const sockets = await Promise.all(Array.from({ length: 7 }, () => n.dial()));
  for (const s of sockets) s.write('x');
  await until(() => n.pool.stats().streams === 7, 3000, '7 streams');
  assert.equal(n.pool.stats().sessions, 3);
  await Promise.all(sockets.map((s) => exchange(s, Buffer.from('y'))));
});

test('an idle session closes after the idle timeout', async (t) => {
  const n = await twoNodes(t, { pool: { idleTimeoutMs: 150 } });
  await exchange(await n.dial(), Buffer.from('ping'));
  assert.equal(n.pool.stats().sessions, 1);
  await until(() => n.pool.stats().sessions === 0 && n.inbound.stats().sessions === 0, 3000, 'idle close');
});

/**
 * A TCP relay in front of the inbound agent whose connections can be broken silently: the
 * agent side is dropped and the pool side is reset only when it next sends something, so the
 * pool still believes the session is fine when it opens the next stream.
 */
async function breakableRelay(target: () => AddressInfo): Promise<{ address: AddressInfo; breakAll(): void; accepted(): number; close(): void }> {
  const pairs = new Set<[Socket, Socket]>();
  let accepted = 0;
  const server = createServer((down) => {
    accepted += 1;
    const up = connect({ host: target().address, port: target().port });
    down.on('error', () => undefined);
    up.on('error', () => undefined);
    down.pipe(up);
    up.pipe(down);
    const pair: [Socket, Socket] = [down, up];
    pairs.add(pair);
    down.on('close', () => pairs.delete(pair));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.3', r));
  return {
    address: server.address() as AddressInfo,
    accepted: () => accepted,
    breakAll: () => {
      for (const [down, up] of pairs) {
        down.unpipe(up);
        up.unpipe(down);
        up.destroy();
        down.removeAllListeners('data');
        down.once('data', () => down.resetAndDestroy());
        down.resume();
      }
    },
    close: () => {
      for (const [down, up] of pairs) {
        down.destroy();
        up.destroy();
      }
      server.close();
    },
  };
}

test('a session that broke silently is replaced and the next connection still succeeds', async (t) => {
  const agent: { address?: AddressInfo } = {};
  const relay = await breakableRelay(() => agent.address as AddressInfo);
  t.after(() => relay.close());
  const n = await twoNodes(t, { outbound: { tunnelPort: relay.address.port } });
  agent.address = n.inboundAddress;
  n.mesh.nodes.set('b', '127.0.0.3');

  assert.equal((await exchange(await n.dial(), Buffer.from('first'))).toString(), 'first');
  assert.equal(relay.accepted(), 1);
  relay.breakAll();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(n.pool.stats().sessions, 1, 'the pool has not noticed the break');
  assert.equal((await exchange(await n.dial(), Buffer.from('second'))).toString(), 'second');
  assert.equal(relay.accepted(), 2, 'a new session was dialled');
  await until(() => n.outbound.connections === 0, 3000, 'records');
  const flags = n.logLines.filter((l) => l.msg === 'connection' && l.reporter === 'source').map((l) => l.flags);
  assert.deepEqual(flags, ['-', '-']);
  assert.equal(n.health.ejected('127.0.2.20:' + String(n.echo.address.port)), false);
});
