import assert from 'node:assert/strict';
import { test } from 'node:test';

import { endpointKey, pickEndpoint, type LoadSnapshot, type Pickable } from '../../../src/proxy/load-balancer.ts';

const ep = (n: number, weight = 1): Pickable => ({ ip: `10.0.0.${n}`, port: 80, weight });
const A = ep(1);
const B = ep(2);
const C = ep(3);
const HEAVY = ep(4, 3);
const ZERO = ep(5, 0);

function snapshot(active: Record<string, number> = {}, ejected: string[] = []): LoadSnapshot {
  return { active: (k) => active[k] ?? 0, ejected: (k) => ejected.includes(k) };
}

/** Returns the given numbers in turn. */
function draws(...values: number[]): () => number {
  let i = 0;
  return () => {
    const v = values[i++];
    if (v === undefined) throw new Error('random called too often');
    return v;
  };
}

const k = (e: Pickable): string => endpointKey(e);

test('pickEndpoint: table of cases', () => {
  const cases: Array<{ name: string; endpoints: Pickable[]; load?: LoadSnapshot; random: () => number; exclude?: string[]; want: Pickable | undefined }> = [
    { name: 'no endpoints', endpoints: [], random: draws(), want: undefined },
    { name: 'one endpoint, no draw', endpoints: [A], random: draws(), want: A },
    { name: 'only weight 0', endpoints: [ZERO], random: draws(), want: undefined },
    { name: 'weight 0 is never picked', endpoints: [ZERO, A], random: draws(), want: A },
    { name: 'all excluded', endpoints: [A, B], random: draws(), exclude: [k(A), k(B)], want: undefined },
    { name: 'excluded skipped', endpoints: [A, B], random: draws(), exclude: [k(A)], want: B },
    { name: 'equal load: first draw wins', endpoints: [A, B, C], random: draws(0.0, 0.0), want: A },
    { name: 'second draw never repeats the first', endpoints: [A, B], random: draws(0.0, 0.0), want: A },
    { name: 'less loaded second draw wins', endpoints: [A, B, C], load: snapshot({ [k(A)]: 5 }), random: draws(0.0, 0.99), want: C },
    { name: 'more loaded second draw loses', endpoints: [A, B, C], load: snapshot({ [k(C)]: 5 }), random: draws(0.0, 0.99), want: A },
    { name: 'load is per unit of weight', endpoints: [A, HEAVY], load: snapshot({ [k(A)]: 1, [k(HEAVY)]: 3 }), random: draws(0.0, 0.5), want: HEAVY },
    { name: 'weights steer the draw', endpoints: [A, HEAVY], random: draws(0.3, 0.5), want: HEAVY },
    { name: 'ejected skipped', endpoints: [A, B, C], load: snapshot({}, [k(A), k(B)]), random: draws(), want: C },
    { name: 'all ejected: pick anyway', endpoints: [A, B], load: snapshot({ [k(A)]: 2 }, [k(A), k(B)]), random: draws(0.0, 0.0), want: B },
    { name: 'rounding at 1.0 stays in range', endpoints: [A, B], random: draws(0.9999999999, 0.9999999999), want: B },
  ];
  for (const c of cases) {
    const got = pickEndpoint(c.endpoints, c.load ?? snapshot(), c.random, c.exclude === undefined ? undefined : new Set(c.exclude));
    assert.equal(got, c.want, c.name);
  }
});

test('pickEndpoint spreads by weight and away from load over many picks', () => {
  let seed = 42;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const counts = new Map<Pickable, number>();
  const endpoints = [A, B, HEAVY];
  const active = new Map<string, number>();
  const load: LoadSnapshot = { active: (key) => active.get(key) ?? 0, ejected: () => false };
  for (let i = 0; i < 5000; i++) {
    const e = pickEndpoint(endpoints, load, random);
    assert.ok(e);
    counts.set(e, (counts.get(e) ?? 0) + 1);
    active.set(k(e), (active.get(k(e)) ?? 0) + 1);
  }
  // With every connection kept open, load per weight evens out: 1 : 1 : 3.
  const share = (e: Pickable): number => (counts.get(e) ?? 0) / 5000;
  assert.ok(Math.abs(share(HEAVY) - 0.6) < 0.05, `heavy share ${share(HEAVY)}`);
  assert.ok(Math.abs(share(A) - 0.2) < 0.05, `A share ${share(A)}`);
});
