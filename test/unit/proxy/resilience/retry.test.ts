// Retries: the verdict table (GEP-1731 codes and attempts, idempotency, replayable bodies,
// gRPC codes, the budget last), the backoff, and Linkerd's budget: the ratio over its sliding
// window, the reserve in a bucket every worker shares.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../../src/core/clock.ts';
import { isWeftError } from '../../../../src/core/errors.ts';
import { RetryBudget, RetryBudgets, checkRetryBudget, reserveShape } from '../../../../src/proxy/resilience/retry-budget.ts';
import { BucketTable, bucketMemory } from '../../../../src/proxy/resilience/token-bucket.ts';
import { backoffDelay, retryVerdict, type AttemptOutcome, type RetryPolicy, type RetryRequest } from '../../../../src/proxy/resilience/retry-policy.ts';

const POLICY: RetryPolicy = { attempts: 2, codes: [502, 503], grpcCodes: [14], backoffMs: 25 };
const GET: RetryRequest = { method: 'GET', grpc: false, bodyReplayable: true };
const POST: RetryRequest = { method: 'POST', grpc: false, bodyReplayable: true };
const GRPC: RetryRequest = { method: 'POST', grpc: true, bodyReplayable: true };
const status = (s: number, grpcStatus?: number): AttemptOutcome => ({ kind: 'response', status: s, grpcStatus });

test('retry verdicts', () => {
  const cases: [string, RetryRequest, AttemptOutcome, number, boolean, string][] = [
    // what, request, outcome, retries so far, budget has room, verdict
    ['503 on GET, first retry', GET, status(503), 0, true, 'retry 25'],
    ['503 on GET, second retry waits double', GET, status(503), 1, true, 'retry 50'],
    ['503 on GET, attempts spent', GET, status(503), 2, true, 'attempts-exhausted'],
    ['500 is not listed', GET, status(500), 0, true, 'status-not-retried'],
    ['200 is a success', GET, status(200), 0, true, 'success'],
    ['503 on POST: not idempotent', POST, status(503), 0, true, 'not-idempotent'],
    ['POST that never reached the backend', POST, { kind: 'connect-failure' }, 0, true, 'retry 25'],
    ['reset on PUT (idempotent)', { ...POST, method: 'PUT' }, { kind: 'reset' }, 0, true, 'retry 25'],
    ['reset on POST', POST, { kind: 'reset' }, 0, true, 'not-idempotent'],
    ['GET with a streamed (over 64 KiB) body', { ...GET, bodyReplayable: false }, status(503), 0, true, 'body-not-buffered'],
    ['budget spent', GET, status(503), 0, false, 'budget-exhausted'],
    ['gRPC UNAVAILABLE (listed)', GRPC, status(200, 14), 0, true, 'retry 25'],
    ['gRPC INTERNAL (not listed)', GRPC, status(200, 13), 0, true, 'status-not-retried'],
    ['gRPC OK', GRPC, status(200, 0), 0, true, 'success'],
    ['gRPC answered 503 by a proxy', GRPC, status(503), 0, true, 'retry 25'],
  ];
  for (const [what, request, outcome, retriesSoFar, room, want] of cases) {
    let spent = 0;
    const v = retryVerdict({ policy: POLICY, request, outcome, retriesSoFar, random: 0, spendBudget: () => { spent++; return room; } });
    assert.equal(v.retry ? `retry ${v.delayMs}` : v.reason, want, what);
    // The budget is spent only for a retry that is otherwise allowed.
    assert.ok(spent <= 1 && (spent === 0 || v.retry || v.reason === 'budget-exhausted'), `${what}: budget asked ${spent} time(s)`);
  }
});

test('backoff doubles, is capped at 10 s, and adds at most 25% jitter', () => {
  assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelay(100, n, 0)), [100, 200, 400, 800]);
  assert.equal(backoffDelay(100, 3, 0.999), 500);
  assert.equal(backoffDelay(4000, 5, 0), 10_000);
});

test('budget: 20% of requests over a sliding 10 s window, plus a reserve of 10 retries/s holding up to 100', () => {
  assert.deepEqual(reserveShape({ retryRatio: 0.2, minRetriesPerSecond: 10, ttlMs: 10_000 }), { maxTokens: 100, tokensPerFill: 1, fillIntervalMs: 100 });
  assert.equal(reserveShape({ retryRatio: 0.2, minRetriesPerSecond: 0, ttlMs: 10_000 }), undefined, 'no reserve');
  const clock = new ManualClock(0);
  const b = new RetryBudget(clock);
  assert.equal(b.left(), 100, 'a new budget: the full reserve');
  let retries = 0;
  // 100 req/s for 10 s, every request failing and asking for a retry.
  for (let t = 0; t < 1000; t++) {
    b.request();
    if (b.tryRetry()) retries++;
    clock.advance(10);
  }
  // 20% of 1000 requests, the reserve's 100, and its refill of 10/s.
  assert.ok(retries >= 390 && retries <= 400, `retries ${retries}`);
  // Steady state, the reserve spent: 20% of 100/s plus 10/s = 30 retries/s.
  let later = 0;
  for (let t = 0; t < 1000; t++) {
    b.request();
    if (b.tryRetry()) later++;
    clock.advance(10);
  }
  assert.ok(later >= 290 && later <= 310, `retries in the next 10 s ${later}`);
  clock.advance(10_000);
  assert.equal(b.left(), 100, 'after a quiet window: the ratio has nothing to give, the reserve is full');
});

test('budget: workers share the reserve (one bucket per Service in shared memory), each keeps its own ratio', () => {
  const clock = new ManualClock(0);
  const memory = bucketMemory(16);
  const shape = { retryRatio: 0.5, minRetriesPerSecond: 1, ttlMs: 10_000 };
  // Two workers: each its own view of the same memory, as proxy-runtime.ts builds them.
  const [w1, w2] = [new RetryBudgets(clock, shape, 10, new BucketTable(clock, memory)), new RetryBudgets(clock, shape, 10, new BucketTable(clock, memory))];
  let reserved = 0;
  while (w1.for('shop/a').tryRetry()) reserved++;
  assert.equal(reserved, 10, 'one worker may spend the whole reserve (1/s x 10 s)');
  assert.equal(w2.for('shop/a').tryRetry(), false, 'the other worker finds it spent');
  assert.equal(w2.for('shop/b').tryRetry(), true, "another Service's reserve is its own");
  for (let i = 0; i < 4; i++) w2.for('shop/a').request();
  assert.equal([1, 2, 3].filter(() => w2.for('shop/a').tryRetry()).length, 2, "the ratio: 50% of this worker's 4 requests");
  assert.equal(w1.for('shop/a').tryRetry(), false, "and not the other worker's");
  clock.advance(1000);
  assert.equal(w2.for('shop/a').tryRetry(), true, 'a second later the reserve has refilled one');
  assert.equal(w1.for('shop/a').tryRetry(), false);
});

test('budgets per service are separate and bounded; bad shapes are refused', () => {
  const clock = new ManualClock(0);
  const budgets = new RetryBudgets(clock, { retryRatio: 0, minRetriesPerSecond: 0.1, ttlMs: 10_000 }, 2);
  assert.equal(budgets.for('a').tryRetry(), true);
  assert.equal(budgets.for('a').tryRetry(), false);
  assert.equal(budgets.for('b').tryRetry(), true);
  budgets.for('c');
  assert.equal(budgets.for('a').left(), 0, 'a was the oldest: forgotten, and made again its reserve is still spent (it lives in the table)');
  const changed = budgets.for('a', { retryRatio: 0, minRetriesPerSecond: 1, ttlMs: 10_000 });
  assert.equal(changed.left(), 0, 'a changed shape keeps the tokens it had');
  for (const bad of [{ retryRatio: -1, minRetriesPerSecond: 1, ttlMs: 1000 }, { retryRatio: 0.2, minRetriesPerSecond: 1, ttlMs: 5 }]) {
    assert.throws(() => checkRetryBudget(bad), (e: unknown) => isWeftError(e, 'WEFT_PROXY_BAD_OPTION'));
  }
});
