// Bytes through outbound -> tunnel (mTLS, HTTP/2 CONNECT) -> inbound -> pod, on loopback.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { closure, exchange, until } from './harness.ts';
import { twoNodes } from './two-nodes.ts';

test('a connection to the VIP arrives byte-identical at the pod on the other node, and comes back', async (t) => {
  const n = await twoNodes(t);
  const data = randomBytes(1024 * 1024 + 17);
  const s = await n.dial();
  const back = await exchange(s, data);
  assert.equal(back.length, data.length);
  assert.ok(back.equals(data), 'echoed bytes differ');
  assert.deepEqual(n.pool.stats().sessions, 1);
});

test('64 MiB each way through the tunnel', async (t) => {
  const n = await twoNodes(t);
  const data = randomBytes(64 * 1024 * 1024);
  const s = await n.dial();
  const t0 = performance.now();
  const back = await exchange(s, data);
  const secs = (performance.now() - t0) / 1000;
  assert.ok(back.equals(data), 'echoed bytes differ');
  t.diagnostic(`64 MiB up and back in ${secs.toFixed(2)} s: ${(64 / secs).toFixed(0)} MiB/s each way (all four hops in one process)`);
});

test('a half-closed upload still gets its full response', async (t) => {
  // The server reads everything, then answers with its length and a trailer after the client's FIN.
  const n = await twoNodes(t, {
    echo: (s) => {
      let total = 0;
      s.on('data', (d: Buffer) => {
        total += d.length;
      });
      s.on('end', () => {
        s.write(`got ${total}\n`);
        setTimeout(() => s.end(randomBytes(300_000).toString('hex')), 20);
      });
    },
  });
  const s = await n.dial();
  const back = await exchange(s, randomBytes(500_000));
  const text = back.toString();
  assert.ok(text.startsWith('got 500000\n'), text.slice(0, 40));
  assert.equal(back.length, 'got 500000\n'.length + 600_000);
});

test('a server that resets mid-transfer resets the client', async (t) => {
  const n = await twoNodes(t, {
    echo: (s) => {
      let seen = 0;
      s.on('data', (d: Buffer) => {
        seen += d.length;
        if (seen > 100_000) s.resetAndDestroy();
      });
    },
  });
  const s = await n.dial();
  const closed = closure(s);
  s.write(randomBytes(1_000_000));
  assert.equal(await closed, 'ECONNRESET');
});

test('a client that resets makes the pod see a reset', async (t) => {
  let podClosed: Promise<string> | undefined;
  const n = await twoNodes(t, {
    echo: (s) => {
      podClosed = closure(s);
    },
  });
  const s = await n.dial();
  s.write('hello');
  await new Promise((r) => setTimeout(r, 100));
  s.resetAndDestroy();
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(podClosed, 'the pod never saw the connection');
  assert.equal(await podClosed, 'ECONNRESET');
});

test('no socket outlives its connection, whatever way it ended', async (t) => {
  const n = await twoNodes(t, {
    echo: (s) => {
      s.once('data', (d: Buffer) => {
        if (d[0] === 0x52) s.resetAndDestroy();
        else {
          s.write(d);
          s.pipe(s);
        }
      });
    },
  });
  const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
  const warm = await n.dial();
  const warmClosed = closure(warm);
  await exchange(warm, Buffer.from('warm up the session'));
  await warmClosed;
  await until(() => n.outbound.connections === 0 && n.echo.sockets.size === 0, 3000, 'warm-up over');
  const baseline = sockets();
  await Promise.all(Array.from({ length: 30 }, async (_, i) => {
    const s = await n.dial();
    if (i % 3 === 0) {
      assert.equal((await exchange(s, Buffer.from('ok'))).toString(), 'ok');
    } else if (i % 3 === 1) {
      const closed = closure(s);
      s.write('R');
      assert.equal(await closed, 'ECONNRESET');
    } else {
      s.write('x');
      await new Promise((r) => setTimeout(r, 20));
      s.resetAndDestroy();
    }
  }));
  await until(() => n.outbound.connections === 0 && n.inbound.stats().streams === 0 && n.echo.sockets.size === 0, 3000, 'all over');
  await until(() => sockets() === baseline, 3000, `socket handles back to ${baseline} (now ${sockets()})`);
  assert.equal(n.pool.stats().streams, 0);
});
