import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ManualClock } from '../../../src/core/clock.ts';
import { OutlierDetector } from '../../../src/proxy/outlier-detector.ts';
import { UpstreamHealth } from '../../../src/proxy/upstream-health.ts';
import { isWeftError } from '../../../src/core/errors.ts';

test('five consecutive failures eject for 30 s; a success in between resets the count', () => {
  const clock = new ManualClock();
  const d = new OutlierDetector(clock);
  for (let i = 0; i < 4; i++) assert.equal(d.failure('e'), false);
  d.success('e');
  for (let i = 0; i < 4; i++) assert.equal(d.failure('e'), false);
  assert.equal(d.ejected('e'), false);
  assert.equal(d.failure('e'), true);
  assert.equal(d.ejected('e'), true);
  assert.equal(d.ejectionLeft('e'), 30_000);
  clock.advance(29_999);
  assert.equal(d.ejected('e'), true);
  clock.advance(1);
  assert.equal(d.ejected('e'), false);
});

test('ejections grow while failures continue, are capped, and reset after a success', () => {
  const clock = new ManualClock();
  const d = new OutlierDetector(clock, { consecutiveFailures: 2, baseEjectionMs: 1000, maxEjectionMs: 2500 });
  const ejectAndWait = (): number => {
    d.failure('e');
    assert.equal(d.failure('e'), true);
    const left = d.ejectionLeft('e');
    clock.advance(left);
    return left;
  };
  assert.deepEqual([ejectAndWait(), ejectAndWait(), ejectAndWait(), ejectAndWait()], [1000, 2000, 2500, 2500]);
  d.success('e');
  assert.equal(d.tracked, 0);
  assert.equal(ejectAndWait(), 1000);
});

test('failures while ejected do not extend the ejection', () => {
  const clock = new ManualClock();
  const d = new OutlierDetector(clock, { consecutiveFailures: 1, baseEjectionMs: 1000 });
  assert.equal(d.failure('e'), true);
  clock.advance(500);
  assert.equal(d.failure('e'), false);
  assert.equal(d.ejectionLeft('e'), 500);
});

test('state is bounded: the oldest endpoint is forgotten first', () => {
  const d = new OutlierDetector(new ManualClock(), { maxTracked: 3 });
  for (const key of ['a', 'b', 'c', 'd']) d.failure(key);
  assert.equal(d.tracked, 3);
});

test('bad options are refused with the field named', () => {
  assert.throws(() => new OutlierDetector(new ManualClock(), { consecutiveFailures: 0 }),
    (e: unknown) => isWeftError(e, 'WEFT_PROXY_BAD_OPTION') && e.message.includes('consecutiveFailures'));
});

test('UpstreamHealth counts connections in flight per endpoint', () => {
  const h = new UpstreamHealth(new ManualClock());
  h.acquire('x');
  h.acquire('x');
  assert.equal(h.active('x'), 2);
  h.release('x');
  h.release('x');
  assert.equal(h.active('x'), 0);
  for (let i = 0; i < 5; i++) h.failed('x');
  assert.equal(h.ejected('x'), true);
  h.connected('x');
  assert.equal(h.ejected('x'), false);
});
