// Each worker gets its inbound socket for every enrolled pod, loses it when the pod leaves,
// and gets new ones when it was restarted; sockets opened after close are closed, not leaked.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, fstatSync } from 'node:fs';
import type { Logger } from 'pino';
import { InboundSockets } from '../../../src/app/inbound-sockets.ts';
import type { ToWorker } from '../../../src/app/worker-messages.ts';

const quiet = { error: () => undefined, warn: () => undefined, info: () => undefined } as unknown as Logger;

function harness(count: number, open: (pod: string, slot: number) => Promise<number | undefined>) {
  const posted: [number, ToWorker][] = [];
  const sockets = new InboundSockets({ openInboundSocket: open }, { count, postTo: (i, m) => void posted.push([i, m]) }, quiet);
  return { sockets, posted };
}

test('one socket per worker for each pod; released on all workers; re-opened for a restarted worker', async () => {
  let next = 100;
  const opened: string[] = [];
  const { sockets, posted } = harness(2, (pod, slot) => {
    opened.push(`${pod}#${slot}`);
    return Promise.resolve(next++);
  });
  await sockets.podEnrolled('shop/web');
  await sockets.podEnrolled('shop/db');
  assert.deepEqual(opened, ['shop/web#0', 'shop/web#1', 'shop/db#0', 'shop/db#1']);
  assert.deepEqual(posted.map(([i, m]) => `${i} ${m.type} ${'pod' in m ? m.pod : ''} ${'fd' in m ? m.fd : ''}`), [
    '0 inbound-socket shop/web 100', '1 inbound-socket shop/web 101', '0 inbound-socket shop/db 102', '1 inbound-socket shop/db 103',
  ]);
  posted.length = 0;
  sockets.podReleased('shop/db');
  sockets.podReleased('shop/db'); // once
  assert.deepEqual(posted.map(([i, m]) => `${i} ${m.type}`), ['0 inbound-release', '1 inbound-release']);
  posted.length = 0;
  await sockets.workerRestarted(1);
  assert.deepEqual(posted.map(([i, m]) => `${i} ${m.type} ${'pod' in m ? m.pod : ''}`), ['1 inbound-socket shop/web']);
});

test('iptables mode opens none; a failure is logged and the rest go on; a socket opened after close is closed', async () => {
  const none = harness(2, () => Promise.resolve(undefined));
  await none.sockets.podEnrolled('shop/web');
  assert.deepEqual(none.posted, []);

  const failing = harness(2, (_pod, slot) => (slot === 0 ? Promise.reject(new Error('no namespace')) : Promise.resolve(7)));
  await failing.sockets.podEnrolled('shop/web');
  assert.deepEqual(failing.posted.map(([i]) => i), [1]);

  const fd = openSync('/dev/null', 'r');
  let release: () => void = () => undefined;
  let asked: () => void = () => undefined;
  const wasAsked = new Promise<void>((resolve) => { asked = resolve; });
  const late = harness(1, () => new Promise((resolve) => {
    release = () => resolve(fd);
    asked();
  }));
  const pending = late.sockets.podEnrolled('shop/web');
  await wasAsked;
  late.sockets.close();
  release();
  await pending;
  assert.deepEqual(late.posted, []);
  assert.throws(() => fstatSync(fd), /EBADF/, 'the descriptor was closed, not leaked');
});
