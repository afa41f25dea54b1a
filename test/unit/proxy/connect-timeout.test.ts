// Connect timeouts against a real listener that never answers: python3 holds a socket in
// listen(0) without accepting, one connection fills its queue, and later SYNs are dropped.
// (Node's own servers always accept, so they cannot play this part.)

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';

import { isWeftError } from '../../../src/core/errors.ts';
import { connectTcp } from '../../../src/proxy/tcp-connect.ts';
import { cannotRun } from '../../support/root.ts';

const SCRIPT = `
import socket, sys
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(0)
print(s.getsockname()[1], flush=True)
sys.stdin.read()
`;

/** The port of a listener whose accept queue is full; undefined (loud skip) without python3. */
async function stuckListener(t: TestContext): Promise<number | undefined> {
  if (spawnSync('python3', ['-c', 'pass']).status !== 0) {
    cannotRun(t, 'needs python3 for a listener that never accepts');
    return undefined;
  }
  const py = spawn('python3', ['-c', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => py.kill());
  const port = await new Promise<number>((resolve) => py.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  // The one connection the queue holds.
  const filler: Socket = await new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
  });
  t.after(() => filler.destroy());
  return port;
}

test('connectTcp gives up after its timeout on a listener that never answers', async (t) => {
  const port = await stuckListener(t);
  if (port === undefined) return;
  const t0 = Date.now();
  await assert.rejects(connectTcp({ host: '127.0.0.1', port, timeoutMs: 200 }), (e: unknown) => isWeftError(e, 'WEFT_PROXY_CONNECT_TIMEOUT'));
  const took = Date.now() - t0;
  assert.ok(took >= 190 && took < 2000, `took ${took} ms`);
});
