// grpc-timeout parsing, formatting and shortening (tables), and fault-injection draws: a 50%
// abort over 400 requests lands within +-7%, whatever the start of the draws.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deadlineFor, formatGrpcTimeout, parseGrpcTimeout } from '../../../../src/proxy/resilience/grpc-timeout.ts';
import { NO_FAULT, faultFor } from '../../../../src/proxy/resilience/fault-decision.ts';
import { EvenDraws } from '../../../../src/core/even-draws.ts';

test('parseGrpcTimeout', () => {
  const cases: [string | undefined, number | undefined][] = [
    ['1H', 3_600_000], ['2M', 120_000], ['3S', 3000], ['250m', 250], ['1500u', 1.5], ['2000000n', 2],
    ['99999999m', 99_999_999], ['123456789m', undefined], ['1s', undefined], ['m', undefined], ['-1S', undefined], ['1.5S', undefined], [undefined, undefined], [' 5S ', 5000],
  ];
  for (const [v, ms] of cases) assert.equal(parseGrpcTimeout(v), ms, String(v));
});

test('formatGrpcTimeout: the finest unit that fits eight digits, never rounding up', () => {
  const cases: [number, string][] = [[0, '0n'], [0.3, '300000n'], [50, '50000000n'], [250, '250000u'], [99_999.9999, '99999999u'], [3_600_000, '3600000m'], [1e12, '16666666M'], [-5, '0n']];
  for (const [ms, want] of cases) assert.equal(formatGrpcTimeout(ms), want, String(ms));
  for (const ms of [1, 17, 999, 12_345, 7_200_000]) assert.equal(parseGrpcTimeout(formatGrpcTimeout(ms)), ms, `round trip ${ms}`);
});

test('deadlineFor: the caller\'s timeout less time spent, or the route\'s if tighter; none left is expired', () => {
  const cases: [string, string | undefined, number, number | undefined, number | undefined, boolean][] = [
    ['no deadline', undefined, 5, undefined, undefined, false],
    ['caller 1 s, 200 ms spent', '1S', 200, undefined, 800, false],
    ['route tighter', '10S', 100, 1000, 900, false],
    ['caller tighter', '300m', 100, 1000, 200, false],
    ['malformed caller header, route only', '1x', 0, 500, 500, false],
    ['time is up', '100m', 150, undefined, -50, true],
  ];
  for (const [what, header, elapsed, route, remaining, expired] of cases) {
    const d = deadlineFor(header, elapsed, route);
    assert.deepEqual([d.remainingMs, d.expired], [remaining, expired], what);
    if (remaining !== undefined && remaining > 0) assert.equal(parseGrpcTimeout(d.header), remaining, `${what}: header ${d.header}`);
  }
});

test('faultFor: delay and abort drawn independently, percentages with fractions', () => {
  const spec = { delay: { fixedDelayMs: 200, percentage: 10 }, abort: { httpStatus: 503, grpcStatus: 14, percentage: 0.5 } };
  assert.deepEqual(faultFor(spec, 0.05, 0.004), { delayMs: 200, abort: { httpStatus: 503, grpcStatus: 14 } });
  assert.deepEqual(faultFor(spec, 0.1, 0.005), NO_FAULT);
  assert.deepEqual(faultFor(spec, 0.2, 0.001), { delayMs: 0, abort: { httpStatus: 503, grpcStatus: 14 } });
  assert.deepEqual(faultFor({ abort: { httpStatus: 500, percentage: 100 } }, 0.99, 0.99999).abort?.httpStatus, 500);
  assert.equal(faultFor({ abort: { httpStatus: 500, percentage: 0 } }, 0, 0), NO_FAULT);
});

test('a 50% abort over 400 requests lands within +-7% (in fact within 2 of 200), from any start; 10% delay likewise', () => {
  for (const start of [0, 0.123, 0.5, 0.999, Math.random()]) {
    const delays = new EvenDraws(start);
    const aborts = new EvenDraws(start + 0.37);
    let aborted = 0;
    let delayed = 0;
    for (let i = 0; i < 400; i++) {
      const f = faultFor({ delay: { fixedDelayMs: 5, percentage: 10 }, abort: { httpStatus: 503, percentage: 50 } }, delays.next(), aborts.next());
      if (f.abort !== undefined) aborted++;
      if (f.delayMs > 0) delayed++;
    }
    assert.ok(Math.abs(aborted - 200) <= 2, `start ${start}: ${aborted} of 400 aborted`);
    assert.ok(Math.abs(delayed - 40) <= 2, `start ${start}: ${delayed} of 400 delayed`);
  }
  const draws = new EvenDraws(0.2);
  const xs = Array.from({ length: 1000 }, () => draws.next());
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  // Uniform: each tenth of [0, 1) gets 100 +- 2.
  for (let d = 0; d < 10; d++) assert.ok(Math.abs(xs.filter((x) => Math.floor(x * 10) === d).length - 100) <= 2, `decile ${d}`);
});
