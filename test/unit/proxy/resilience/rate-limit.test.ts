// Which buckets a request draws on (per source, override, plaintext shared, total), what an
// empty one answers, Shadow policies that only count, and the L4 connection rate.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../../src/core/clock.ts';
import type { RateLimitPolicyObject } from '../../../../src/model/traffic-policy-types.ts';
import { connectionRateVerdict, rateLimitVerdict } from '../../../../src/proxy/resilience/rate-limit-decision.ts';
import { BucketTable, bucketMemory } from '../../../../src/proxy/resilience/token-bucket.ts';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const VIP = 'spiffe://cluster.local/ns/shop/sa/vip';
const policy = (name: string, extra: Partial<RateLimitPolicyObject>): RateLimitPolicyObject => ({
  kind: 'RateLimitPolicy', name, namespace: 'shop', targetRef: { name: 'db' }, overrides: [], mode: 'Enforce', ...extra,
});

function table(): { buckets: BucketTable; clock: ManualClock } {
  const clock = new ManualClock(0);
  return { clock, buckets: new BucketTable(clock, bucketMemory(256)) };
}

const allowedOf = (n: number, f: () => boolean): number => {
  let ok = 0;
  for (let i = 0; i < n; i++) if (f()) ok++;
  return ok;
};

test('perSource: a bucket per SPIFFE id, every plaintext caller in one, an override its own rate', () => {
  const { buckets } = table();
  const p = [policy('per', { perSource: { requestsPerSecond: 2, burst: 3 }, overrides: [{ principal: VIP, requestsPerSecond: 100, burst: 50 }] })];
  const take = (src: string | undefined): boolean => rateLimitVerdict(p, src, buckets).allowed;
  assert.equal(allowedOf(10, () => take(WEB)), 3);
  assert.equal(allowedOf(10, () => take('spiffe://cluster.local/ns/shop/sa/other')), 3, 'another identity, another bucket');
  assert.equal(allowedOf(10, () => take(undefined)), 3, 'plaintext callers share one bucket');
  assert.equal(allowedOf(60, () => take(VIP)), 50, 'the override');
  const refused = rateLimitVerdict(p, WEB, buckets);
  assert.deepEqual([refused.allowed, refused.policy, refused.retryAfterMs], [false, 'shop/per', 500]);
});

test('total and perSource together: either empty refuses; policies in turn; Shadow only reports', () => {
  const { buckets, clock } = table();
  const both = [policy('both', { total: { requestsPerSecond: 10, burst: 4 }, perSource: { requestsPerSecond: 10, burst: 3 } })];
  assert.equal(allowedOf(10, () => rateLimitVerdict(both, WEB, buckets).allowed), 3, 'the per-source bucket first');
  assert.equal(allowedOf(10, () => rateLimitVerdict(both, VIP, buckets).allowed), 1, 'the total had 4');
  clock.advance(100);
  assert.equal(rateLimitVerdict(both, VIP, buckets).allowed, true, 'a fill every 100 ms at 10/s');
  const shadow = [policy('shadow', { total: { requestsPerSecond: 1, burst: 1 }, mode: 'Shadow' })];
  assert.deepEqual(rateLimitVerdict(shadow, WEB, buckets), { allowed: true });
  assert.deepEqual(rateLimitVerdict(shadow, WEB, buckets), { allowed: true, policy: 'shop/shadow', shadow: true, retryAfterMs: 900 });
  assert.deepEqual(rateLimitVerdict([], WEB, buckets), { allowed: true });
});

test('connections per second: the L4 variant', () => {
  const { buckets, clock } = table();
  const p = [policy('conn', { connections: { requestsPerSecond: 5, burst: 5 } })];
  assert.equal(allowedOf(20, () => connectionRateVerdict(p, buckets).allowed), 5);
  clock.advance(1000);
  assert.equal(allowedOf(20, () => connectionRateVerdict(p, buckets).allowed), 5);
  assert.deepEqual(connectionRateVerdict([policy('none', { total: { requestsPerSecond: 1, burst: 1 } })], buckets), { allowed: true });
});

test('connections per second: a Shadow refusal is reported but does not hide an enforcing policy after it', () => {
  const { buckets } = table();
  const shadow = policy('conn-shadow', { connections: { requestsPerSecond: 1, burst: 1 }, mode: 'Shadow' });
  const enforce = policy('conn-enforce', { connections: { requestsPerSecond: 2, burst: 2 } });
  assert.deepEqual(connectionRateVerdict([shadow, enforce], buckets), { allowed: true });
  assert.deepEqual(connectionRateVerdict([shadow, enforce], buckets), { allowed: true, policy: 'shop/conn-shadow', shadow: true, retryAfterMs: 1000 });
  const refused = connectionRateVerdict([shadow, enforce], buckets);
  assert.deepEqual([refused.allowed, refused.policy, refused.shadow], [false, 'shop/conn-enforce', undefined], 'the enforcing bucket is empty now');
});
