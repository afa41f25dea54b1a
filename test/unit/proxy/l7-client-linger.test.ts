// How the HTTP layer closes a captured client socket (issue 16, point 5), with the native
// SO_LINGER closer: while a response may be in flight the socket lingers 0, so a dying agent
// resets it; every close the layer makes itself sends FIN, as the client would see without the
// mesh. A response its upstream cut (the server killed) ends with a FIN and the body short of
// its content-length (curl: exit 18), not a reset (56); a whole response (the client asked to close) is delivered whole
// to a slow reader before the FIN. The agent's death itself is test/sim/mesh-peer-kill.test.ts.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { test, type TestContext } from 'node:test';

import { LingerSocketCloser } from '../../../src/app/native-sockets.ts';
import { NATIVE_ADDON_PATH } from '../../../src/core/native-addon.ts';
import type { SocketCloser } from '../../../src/proxy/splice.ts';
import { cannotRun } from '../../support/root.ts';
import { l7Mesh } from './l7-harness.ts';

/** The real closer, with what it was asked per socket (by the client's port on the proxy). */
function recordingCloser(): SocketCloser & { readonly calls: Map<number, string[]> } {
  const real = new LingerSocketCloser({ warn: () => undefined });
  const calls = new Map<number, string[]>();
  const note = (s: Socket, what: string): void => {
    const key = s.remotePort ?? -1;
    calls.set(key, [...(calls.get(key) ?? []), what]);
  };
  return {
    calls,
    resetOnClose: (s) => {
      note(s, 'reset');
      real.resetOnClose(s);
    },
    finOnClose: (s) => {
      note(s, 'fin');
      real.finOnClose(s);
    },
  };
}

function addonOrSkip(t: TestContext): boolean {
  if (existsSync(NATIVE_ADDON_PATH)) return true;
  return cannotRun(t, `the native addon ${NATIVE_ADDON_PATH} is not built; run npm run bootstrap`);
}

/** How the client's connection ended (its half-open socket waits for nothing more) and what it got. */
function ending(s: Socket): Promise<{ how: string; bytes: number; tail: string }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    const done = (how: string): void => {
      const all = Buffer.concat(parts);
      resolve({ how, bytes: all.length, tail: all.subarray(-8).toString() });
    };
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => done('FIN'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    s.once('close', () => done('closed without FIN'));
  });
}

const MiB = 2 ** 20;

test('a response its upstream cut ends the client with a FIN, short of its length; it lingered 0 until then', { timeout: 60_000 }, async (t) => {
  if (!addonOrSkip(t)) return;
  const closer = recordingCloser();
  let midResponse: string[] | undefined;
  const n = await l7Mesh(t, {
    closer,
    h1: (_name, _req, res) => {
      // 8 MiB promised, 1 MiB sent, then the server dies (nothing unread: its kernel FINs).
      res.writeHead(200, { 'content-length': String(8 * MiB) });
      res.write(Buffer.alloc(MiB, 1), () => setTimeout(() => res.socket?.destroy(), 100));
    },
  });
  for (const port of [n.backends[0]?.port, n.backends[2]?.port]) assert.ok(port !== undefined);
  // Both a backend on this node (straight) and one behind the tunnel: the layer picks; several
  // requests reach both kinds.
  for (let i = 0; i < 4; i++) {
    const s = await n.dial();
    t.after(() => s.destroy());
    const port = s.localPort ?? 0;
    const ended = ending(s);
    s.once('data', () => {
      midResponse = [...(closer.calls.get(port) ?? [])];
    });
    s.write('GET /big HTTP/1.1\r\nhost: web.shop\r\n\r\n');
    const end = await ended;
    assert.equal(end.how, 'FIN', `request ${i + 1}: the client saw a FIN, not a reset (after ${end.bytes} bytes)`);
    assert.ok(end.bytes > MiB / 2 && end.bytes < 8 * MiB, `request ${i + 1}: the body was cut (${end.bytes} bytes)`);
    assert.deepEqual(midResponse, ['reset'], `request ${i + 1}: mid-response the socket lingered 0 (a dying agent resets it)`);
    assert.equal(closer.calls.get(port)?.at(-1), 'fin', `request ${i + 1}: lingering off before the layer's close`);
  }
});

test('a whole response to a `connection: close` request reaches a slow reader whole, then a FIN', { timeout: 60_000 }, async (t) => {
  if (!addonOrSkip(t)) return;
  const closer = recordingCloser();
  const n = await l7Mesh(t, {
    closer,
    h1: (_name, _req, res) => {
      res.writeHead(200, { 'content-length': String(8 * MiB) });
      res.end(Buffer.concat([Buffer.alloc(8 * MiB - 8, 2), Buffer.from('THE-END!')]));
    },
  });
  for (let i = 0; i < 3; i++) {
    const s = await n.dial();
    t.after(() => s.destroy());
    const ended = ending(s);
    // Most of the body still sits in the proxy's buffers when it is done with the response.
    s.pause();
    setTimeout(() => s.resume(), 300);
    s.write('GET /big HTTP/1.1\r\nhost: web.shop\r\nconnection: close\r\n\r\n');
    const end = await ended;
    assert.equal(end.how, 'FIN', `request ${i + 1}`);
    assert.equal(end.tail, 'THE-END!', `request ${i + 1}: the whole body (${end.bytes} bytes with the head)`);
    assert.ok(end.bytes > 8 * MiB, `request ${i + 1}: ${end.bytes} bytes`);
  }
});
