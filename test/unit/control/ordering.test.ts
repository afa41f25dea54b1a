// No agent ever applies an older version of a resource after a newer one, whatever happens
// between: snapshots faster than agents apply them (so pushes coalesce), first syncs and
// deltas cut into parts, agents that refuse some versions, and the control plane going away
// and coming back (agents resubscribe with what they hold). Over real gRPC+mTLS on 127.0.0.1.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ControlResource } from '../../../src/control/resource.ts';
import { NODES, snapshot, startAgent, startServer, testValidator, waitFor, type AgentHarness, type ServerHarness } from './harness.ts';

const KEYS = 40;
const ROUNDS = 160;

/** mulberry32, seeded: a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Body { readonly seq: number; readonly pad: string; readonly bad?: string }

test('no agent ever applies an older version after a newer one: coalesced pushes, parts, refusals, restarts', async (t) => {
  const random = rng(20261201);
  // seq of each key per node: the round that last changed it.
  const seqs = new Map(NODES.map((n) => [n, Array.from({ length: KEYS }, () => 0)]));
  const content = () => snapshot(Object.fromEntries(NODES.map((n) => [n, Object.fromEntries((seqs.get(n) ?? []).map((seq, i) => {
    const body: Body = { seq, pad: 'x'.repeat(200), ...(seq > 0 && (seq * 7 + i) % 23 === 0 ? { bad: `round ${seq} refused` } : {}) };
    return [`svc/ns/s${i}`, body];
  }))])));

  // Small parts (about 5 resources each) so first syncs and big deltas come in several.
  const extra = { maxPushBytes: 1_200 };
  let server: ServerHarness = await startServer(0, extra);
  const port = server.port;
  t.after(() => server.server.destroy());
  server.server.setSnapshot(content());

  const seen = new Map<string, Map<string, number>>(NODES.map((n) => [n, new Map()]));
  const violations: string[] = [];
  const applied = new Map<string, number>(NODES.map((n) => [n, 0]));
  const observe = (node: string, config: ReadonlyMap<string, ControlResource>): void => {
    applied.set(node, (applied.get(node) ?? 0) + 1);
    const last = seen.get(node) as Map<string, number>;
    for (const [key, r] of config) {
      const seq = (r.body as Body).seq;
      const before = last.get(key);
      if (before !== undefined && seq < before) violations.push(`${node} ${key}: applied seq ${seq} after ${before}`);
      last.set(key, seq);
    }
  };
  const agents: AgentHarness[] = [];
  for (const n of NODES) {
    // A slow, picky agent: validating a resource takes a moment, and flagged versions are refused.
    const validate = (r: ControlResource): string | undefined => {
      const until = performance.now() + random() * 0.4;
      while (performance.now() < until) { /* busy: this agent applies slower than the server changes */ }
      return testValidator(r);
    };
    agents.push(await startAgent(n, port, { validate, backoff: { initialMs: 20, maxMs: 100 }, onConfig: (config) => observe(n, config) }));
  }
  t.after(() => Promise.all(agents.map((a) => a.client.close())));
  await Promise.all(agents.map((a) => a.client.whenSynced()));

  for (let round = 1; round <= ROUNDS; round++) {
    for (const n of NODES) {
      const s = seqs.get(n) as number[];
      const changes = random() < 0.1 ? KEYS : 1 + Math.floor(random() * 4); // now and then a big delta
      for (let c = 0; c < changes; c++) s[Math.floor(random() * KEYS)] = round;
    }
    server.server.setSnapshot(content());
    if (round % 60 === 0) {
      // The control plane goes away and comes back with the newest snapshot.
      server.server.destroy();
      await waitFor(() => agents.every((a) => !a.client.connected), 'agents to notice', 5_000);
      server = await startServer(port, extra);
      server.server.setSnapshot(content());
    }
    await new Promise((r) => setTimeout(r, random() * 6));
  }

  // Every agent converges on the newest versions, except those it refused (it keeps the one before).
  const final = content();
  for (const [i, a] of agents.entries()) {
    const node = NODES[i] as string;
    const want = final.get(node) as ReadonlyMap<string, unknown>;
    await waitFor(() => {
      const held = a.client.config().resources;
      return [...want].every(([k, body]) => (body as Body).bad !== undefined || (held.get(k)?.body as Body | undefined)?.seq === (body as Body).seq);
    }, `${node} to converge`, 15_000);
  }
  assert.deepEqual(violations, []);
  t.diagnostic(`configs applied per agent: ${[...applied.values()].join(', ')} for ${ROUNDS} snapshots (coalesced)`);
  assert.ok([...applied.values()].every((n) => n > 5 && n < ROUNDS + 10), 'the agents applied many updates');
  const refused = agents.reduce((n, a) => n + a.client.configDump().rejected.length, 0);
  t.diagnostic(`refused resources held at the end: ${refused}`);
});
