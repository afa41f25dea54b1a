import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { pino } from 'pino';

import { BatchedLog } from '../../../src/telemetry/batched-log.ts';

function target(): { writes: string[]; flushed: number; write(s: string): void; flush(cb?: () => void): void } {
  return {
    writes: [], flushed: 0,
    write(s: string) { this.writes.push(s); },
    flush(cb?: () => void) { this.flushed += 1; cb?.(); },
  };
}

test('info lines are batched into one write within delayMs; order holds', async () => {
  const t = target();
  const logger = pino({ level: 'info', base: null }, new BatchedLog(t, { delayMs: 20 }));
  logger.info({ n: 1 }, 'connection');
  logger.info({ n: 2 }, 'connection');
  assert.equal(t.writes.length, 0, 'nothing is written at once');
  await sleep(60);
  assert.equal(t.writes.length, 1);
  assert.deepEqual(t.writes.join('').trim().split('\n').map((l) => (JSON.parse(l) as { n: number }).n), [1, 2]);
});

test('a warning goes out at once, after the pending info lines', () => {
  const t = target();
  const logger = pino({ level: 'info', base: null }, new BatchedLog(t, { delayMs: 10_000 }));
  logger.info({ n: 1 }, 'connection');
  logger.warn({ n: 2 }, 'trouble');
  assert.equal(t.writes.length, 1);
  assert.deepEqual(t.writes[0]?.trim().split('\n').map((l) => (JSON.parse(l) as { n: number }).n), [1, 2]);
});

test('a full batch is written at once, and logger.flush() writes what is pending and flushes the target', () => {
  const t = target();
  const logger = pino({ level: 'info', base: null }, new BatchedLog(t, { delayMs: 10_000, maxBytes: 200 }));
  for (let i = 0; i < 10; i++) logger.info({ n: i, pad: 'x'.repeat(30) }, 'connection');
  assert.ok(t.writes.length >= 2, `expected the batch to be cut by size, got ${t.writes.length} writes`);
  logger.info({ n: 10 }, 'connection');
  let called = false;
  logger.flush(() => { called = true; });
  assert.ok(called);
  assert.equal(t.flushed, 1);
  const ns = t.writes.join('').trim().split('\n').map((l) => (JSON.parse(l) as { n: number }).n);
  assert.deepEqual(ns, Array.from({ length: 11 }, (_, i) => i));
});
