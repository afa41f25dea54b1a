// The fairness step in the HTTP layer on the loopback mesh (real sockets, a real undici
// client): a request of a held source waits for its turn, then reaches the backend; one past
// the bound of waiting requests is answered 503 with the flag OL at once and never reaches
// the backend; a source that is not held goes straight on.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client } from 'undici';

import { fairnessStep } from '../../../src/proxy/http/fairness-step.ts';
import type { Admission, AdmissionKind } from '../../../src/proxy/resilience/source-fairness.ts';
import { until } from './harness.ts';
import { l7Mesh, type L7Mesh } from './l7-harness.ts';

function h1Client(n: L7Mesh): Client {
  return new Client('http://web.shop', {
    pipelining: 1,
    connect: (_o, cb) => {
      n.dial(80).then((s) => cb(null, s), (e: Error) => cb(e, null));
    },
  });
}

test('fairness step: a held request waits then reaches the backend; a refused one gets 503 OL and never does; others go on', async (t) => {
  let hits = 0;
  let answer: 'now' | Admission = 'now';
  let settle: (a: Admission) => void = () => undefined;
  const asked: string[] = [];
  const fairness = {
    admit: (source: string, kind: AdmissionKind): 'now' | Promise<Admission> => {
      asked.push(`${kind} ${source}`);
      if (answer === 'now') return 'now';
      if (answer === 'refused') return Promise.resolve('refused');
      return new Promise((resolve) => { settle = resolve; });
    },
  };
  const n = await l7Mesh(t, {
    h1: (_name, _req, res) => {
      hits += 1;
      res.end('ok');
    },
    steps: [fairnessStep(fairness)],
  });
  const c = h1Client(n);
  t.after(() => c.destroy());

  const free = await c.request({ path: '/x', method: 'GET' });
  assert.equal(free.statusCode, 200);
  await free.body.text();
  assert.equal(hits, 1);
  assert.deepEqual(asked, [`request ${n.client.ip}`], 'asked once per request, keyed by the calling pod');

  answer = 'waited';
  const held = c.request({ path: '/x', method: 'GET' });
  await until(() => asked.length === 2, 3000, 'the request asked');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(hits, 1, 'not forwarded while held');
  settle('waited');
  const r = await held;
  assert.equal(r.statusCode, 200);
  await r.body.text();
  assert.equal(hits, 2);

  answer = 'refused';
  const refused = await c.request({ path: '/x', method: 'GET' });
  assert.equal(refused.statusCode, 503);
  assert.match(await refused.body.text(), /overloaded/);
  assert.equal(hits, 2, 'a refused request never reaches the backend');
  await until(() => n.requests.records.filter((x) => x.outcome !== undefined).length === 3, 3000, 'records');
  assert.deepEqual(n.requests.records.map((x) => x.outcome?.flags), ['-', '-', 'OL']);
});
