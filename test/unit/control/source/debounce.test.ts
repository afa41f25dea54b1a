// The source debouncer: a burst becomes one run, and a stream of triggers that never
// pauses still runs the work within its bound.

import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { Debouncer } from '../../../../src/control/source/debounce.ts';

test('a burst of triggers is one run, after the quiet time', async () => {
  let runs = 0;
  const d = new Debouncer(30, () => { runs++; return Promise.resolve(); }, () => {});
  for (let i = 0; i < 10; i++) d.trigger();
  await sleep(80);
  assert.equal(runs, 1);
  await d.close();
});

test('triggers that never pause for the quiet time still run the work within maxDelayMs', async () => {
  const at: number[] = [];
  const started = performance.now();
  const d = new Debouncer(50, () => { at.push(performance.now() - started); return Promise.resolve(); }, () => {}, 150);
  // Every 10 ms for 700 ms: never 50 ms of quiet.
  while (performance.now() - started < 700) {
    d.trigger();
    await sleep(10);
  }
  await d.close();
  assert.ok(at.length >= 3, `ran ${at.length} times: ${at.map((t) => t.toFixed(0)).join(', ')} ms`);
  // Generous: 150 ms bound, timers on a shared machine.
  assert.ok((at[0] ?? Infinity) < 400, `first run at ${at[0]} ms`);
});

test('a busy event loop is not quiet: an event that waited behind it joins the same run', async () => {
  const at: number[] = [];
  const d = new Debouncer(30, () => { at.push(performance.now() - started); return Promise.resolve(); }, () => {}, 1_000);
  // Events come as socket data, as a watch's do: a datagram on loopback, sent by another
  // thread while this one is busy.
  const socket = createSocket('udp4');
  socket.on('message', () => d.trigger());
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const sender = new Worker(`
    const { parentPort } = require('node:worker_threads');
    const s = require('node:dgram').createSocket('udp4');
    parentPort.once('message', (port) => setTimeout(() => s.send('x', port, '127.0.0.1', () => s.close()), 15));
    parentPort.postMessage('ready');
  `, { eval: true });
  await new Promise((resolve) => sender.once('message', resolve));
  const started = performance.now();
  d.trigger();
  setTimeout(() => {
    sender.postMessage(socket.address().port);
    // Busy from the check phase past the quiet time: the next loop turn runs the due quiet
    // timer before it polls the socket that holds the event.
    setImmediate(() => {
      const until = performance.now() + 60;
      while (performance.now() < until) { /* busy */ }
    });
  }, 5);
  await sleep(250);
  await d.close();
  socket.close();
  await sender.terminate();
  assert.equal(at.length, 1, `one run, not one at the late timer and another for the event behind it: ${at.map((t) => t.toFixed(0)).join(', ')} ms`);
  assert.ok((at[0] ?? 0) >= 90, `the run waited for quiet after the late event: at ${at[0]?.toFixed(0)} ms`);
});
