// DestinationPolicy outlierDetection in the HTTP layer on the loopback mesh (real sockets,
// real undici client): a pod answering 500 to everything reaches the client exactly
// consecutive5xxErrors times, is then ejected (the others answer everything) until
// baseEjectionTime has passed, is tried again and ejected again; maxEjectionPercent keeps a
// second bad pod in (refused ejections are reported) and its 500s keep coming; without
// outlier detection the balancer's own failure accrual (7 in a row) is what ejects.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Client } from 'undici';

import { ManualClock } from '../../../src/core/clock.ts';
import { OutlierEjections, type OutlierPolicy } from '../../../src/proxy/resilience/outlier-ejection.ts';
import { l7Mesh, type H1Handler, type L7Mesh } from './l7-harness.ts';

function h1Client(n: L7Mesh): Client {
  return new Client('http://web.shop', {
    pipelining: 1,
    connect: (_o, cb) => {
      n.dial(80).then((s) => cb(null, s), (e: Error) => cb(e, null));
    },
  });
}

/** Backends named in `bad` answer 500, the rest 200 with their name. */
function failing(bad: readonly string[]): H1Handler {
  return (name, req, res) => {
    req.resume();
    req.on('end', () => {
      res.statusCode = bad.includes(name) ? 500 : 200;
      res.end(name);
    });
  };
}

async function send(c: Client, n: number): Promise<{ fails: number; from: Set<string> }> {
  let fails = 0;
  const from = new Set<string>();
  for (let i = 0; i < n; i++) {
    const r = await c.request({ path: '/x', method: 'GET' });
    const body = await r.body.text();
    if (r.statusCode >= 500) {
      fails++;
      from.add(body);
    }
  }
  return { fails, from };
}


test('outlierDetection: a pod answering 500 always is ejected after consecutive5xxErrors, back after baseEjectionTime, ejected again', async (t) => {
  const clock = new ManualClock(0);
  const outliers = new OutlierEjections(clock);
  const policy: OutlierPolicy = { consecutive5xxErrors: 3, intervalMs: 1_000, baseEjectionMs: 5_000, maxEjectionPercent: 50 };
  const events: string[] = [];
  const n = await l7Mesh(t, {
    h1: failing(['web-1']),
    outliers: (key) => outliers.for(key, key === 'shop/web' ? policy : undefined),
    outlierEvent: (service, event, endpoint) => events.push(`${service} ${event} ${endpoint}`),
  });
  const c = h1Client(n);
  t.after(() => c.destroy());
  const web1 = `${n.backends[0]?.pod.ip ?? ''}:${n.backends[0]?.port ?? 0}`;
  const first = await send(c, 60);
  assert.deepEqual([first.fails, [...first.from]], [3, ['web-1']], 'three 500s from web-1, then none');
  assert.deepEqual(events, [`shop/web ejected ${web1}`]);
  clock.advance(4_999);
  assert.equal((await send(c, 40)).fails, 0, 'still ejected');
  clock.advance(1);
  const back = await send(c, 60);
  assert.equal(back.fails, 3, 'tried again after baseEjectionTime, and ejected again after three more');
  assert.equal(events.length, 2);
  clock.advance(9_999);
  assert.equal((await send(c, 40)).fails, 0, 'the second ejection lasts twice as long');
});

test('outlierDetection: maxEjectionPercent keeps the second bad pod in and reports the refusal; without it failure accrual ejects after 7', async (t) => {
  const clock = new ManualClock(0);
  const outliers = new OutlierEjections(clock);
  const policy: OutlierPolicy = { consecutive5xxErrors: 2, intervalMs: 1_000, baseEjectionMs: 60_000, maxEjectionPercent: 25 };
  const events: string[] = [];
  let enabled = true;
  const n = await l7Mesh(t, {
    h1: failing(['web-1', 'web-2']),
    outliers: (key) => outliers.for(key, enabled ? policy : undefined),
    outlierEvent: (_service, event) => events.push(event),
  });
  const c = h1Client(n);
  t.after(() => c.destroy());
  const r = await send(c, 80);
  assert.equal(events.filter((e) => e === 'ejected').length, 1, 'one of four is 25%');
  assert.ok(events.filter((e) => e === 'ejection-refused').length >= 1, JSON.stringify(events));
  assert.equal(r.from.size, 2);
  assert.ok(r.fails > 10, `the pod kept in goes on failing: ${r.fails}`);
  // The policy goes: the detector with it; the balancer's failure accrual takes over.
  enabled = false;
  const accrual = await send(c, 80);
  // Accrual counted all along (web-2 is ejected already, web-1 has two of its seven): at most 7 each, not half of 80.
  assert.ok(accrual.fails >= 1 && accrual.fails <= 14, `accrual ejects each bad pod after 7 in a row: ${accrual.fails}`);
  assert.equal(outliers.size, 0);
});
