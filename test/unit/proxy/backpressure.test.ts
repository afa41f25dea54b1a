// No unbounded buffering: when the pod stops reading, the client soon cannot write more,
// on the direct path and through the tunnel (HTTP/2 flow control), and the bytes parked in
// between stay bounded by socket buffers and windows.

import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';

import { connectTcp } from '../../../src/proxy/tcp-connect.ts';
import { isWeftError } from '../../../src/core/errors.ts';
import { echoServer } from './harness.ts';
import { VIP, twoNodes } from './two-nodes.ts';

/** Writes until the socket has refused more for 300 ms; resolves with how much it took. */
function fillUntilStuck(s: Socket, limit: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 1);
  let written = 0;
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const pump = (): void => {
      clearTimeout(timer);
      while (written < limit) {
        written += chunk.length;
        if (!s.write(chunk)) {
          timer = setTimeout(() => resolve(written), 300);
          s.once('drain', pump);
          return;
        }
      }
      resolve(written);
    };
    pump();
  });
}

for (const path of ['direct', 'tunnel'] as const) {
  test(`a pod that stops reading stalls the client (${path})`, async (t) => {
    let pod: Socket | undefined;
    const n = await twoNodes(t, {
      echo: (s) => {
        pod = s;
        s.pause();
      },
    });
    if (path === 'direct') {
      // The pod on the client's own node: no tunnel.
      n.mesh.workloads.set(n.server.ip ?? '', { ...n.server, node: 'a' });
    }
    const s = await n.dial(VIP);
    s.on('error', () => undefined);
    const limit = 256 * 1024 * 1024;
    const written = await fillUntilStuck(s, limit);
    t.diagnostic(`${path}: ${(written / 1048576).toFixed(1)} MiB accepted before the client stalled`);
    // Kernel buffers on three sockets plus, for the tunnel, a 4 MiB stream window.
    assert.ok(written < 64 * 1024 * 1024, `${written} bytes accepted: something buffers without bound`);
    assert.equal(n.pool.stats().sessions, path === 'tunnel' ? 1 : 0);
    // Reading again lets everything through.
    let got = 0;
    pod?.on('data', (d: Buffer) => {
      got += d.length;
    });
    pod?.resume();
    s.end();
    await new Promise<void>((resolve) => pod?.once('end', resolve));
    assert.ok(got >= written, `pod got ${got} of ${written}`);
  });
}

test('connectTcp: refused and aborted connects reject with their codes', async () => {
  const e = await echoServer('127.0.0.1');
  const port = e.address.port;
  await e.close();
  await assert.rejects(connectTcp({ host: '127.0.0.1', port, timeoutMs: 1000 }), (err: unknown) => isWeftError(err, 'WEFT_PROXY_CONNECT_FAILED'));
  await assert.rejects(connectTcp({ host: '127.0.0.1', port, timeoutMs: 1000, signal: AbortSignal.abort() }), (err: unknown) => isWeftError(err, 'WEFT_PROXY_ABORTED'));
});
