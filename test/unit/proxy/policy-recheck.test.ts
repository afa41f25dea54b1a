// Live re-check (issue 9, point 4): a policy change judges every open connection again. The
// decision as a table (the real policy engine over real AuthorizationPolicy and
// PeerAuthentication objects), and end to end through two loopback nodes: of 200 open
// connections from two workloads, the 100 a new ALLOW rule leaves out are reset within a
// second, on both agents, and the other 100 keep transferring.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Socket } from 'node:net';

import type { AuthorizationRequest } from '../../../src/model/authorize.ts';
import type { ConnectionEnding, ListenerKind } from '../../../src/proxy/connection-registry.ts';
import { recheckEnding, recheckJudge } from '../../../src/proxy/policy-recheck.ts';
import { spiffeId } from '../../support/certs.ts';
import { policy, state } from '../model/fixture.ts';
import { closure, dialCaptured, testCredentials, until, workload } from './harness.ts';
import { twoNodes, VIP } from './two-nodes.ts';

const peerAuth = (ns: string, name: string, mode: string): object => ({
  apiVersion: 'weft.dev/v1alpha1', kind: 'PeerAuthentication', metadata: { name, namespace: ns }, spec: { mtls: { mode } },
});
const onlyWeb = policy('shop', 'only-web', { action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }] }] });

test('re-check decisions: what the new policy denies ends (naming it), plaintext into a now-STRICT pod ends, the rest goes on', () => {
  const before = state();
  const db = before.workloadByIp('198.18.2.11');
  assert.ok(db);
  const fromWeb: AuthorizationRequest = { sourcePrincipal: spiffeId('shop', 'web'), sourceNamespace: 'shop', sourceIp: '198.18.1.10', destinationWorkload: db, destinationPort: 5432 };
  const fromBatch: AuthorizationRequest = { ...fromWeb, sourcePrincipal: spiffeId('shop', 'batch') };
  const plain: AuthorizationRequest = { sourcePrincipal: undefined, sourceNamespace: undefined, sourceIp: '198.18.1.20', destinationWorkload: db, destinationPort: 5432 };
  const conn = (listener: ListenerKind, ...authorized: AuthorizationRequest[]) => ({ listener, authorized });
  const cases: [string, ReturnType<typeof state>, ReturnType<typeof conn>, RegExp | undefined][] = [
    ['no change: nothing ends', before, conn('inbound-tunnel', fromWeb), undefined],
    ['not yet authorized: nothing to re-check', state([onlyWeb]), conn('inbound-plain'), undefined],
    ['allowed by the new policy', state([onlyWeb]), conn('inbound-tunnel', fromWeb), undefined],
    ['left out by the new ALLOW policy', state([onlyWeb]), conn('inbound-tunnel', fromBatch), /^DENY closed by a policy change: no rule of the 1 ALLOW policy/],
    ['any of its requests denied ends it', state([onlyWeb]), conn('outbound', fromWeb, fromBatch), /^DENY /],
    ['a DENY policy names itself', state([policy('shop', 'no-web', { action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }] }] })]), conn('outbound', fromWeb), /^DENY closed by a policy change: policy shop\/no-web: denied by DENY policy shop\/no-web$/],
    ['plaintext into a pod now STRICT', state([peerAuth('shop', 'strict', 'STRICT')]), conn('inbound-plain', plain), /^MTLS_REQUIRED closed by a policy change: shop\/db-1 takes mTLS only now \(PeerAuthentication shop\/strict is STRICT\)$/],
    ['mTLS into a pod now STRICT goes on', state([peerAuth('shop', 'strict', 'STRICT')]), conn('inbound-tunnel', fromWeb), undefined],
    ['plaintext, still PERMISSIVE', state([peerAuth('shop', 'open', 'PERMISSIVE')]), conn('inbound-plain', plain), undefined],
  ];
  for (const [name, view, c, want] of cases) {
    const ending: ConnectionEnding | undefined = recheckEnding(view, c);
    if (want === undefined) assert.equal(ending, undefined, name);
    else assert.match(`${ending?.flags ?? '-'} ${ending?.detail ?? ''}`, want, name);
  }
});

test('one judge for many connections: each distinct request is judged once, and every connection gets its own answer', () => {
  const db = state().workloadByIp('198.18.2.11');
  assert.ok(db);
  const fromWeb: AuthorizationRequest = { sourcePrincipal: spiffeId('shop', 'web'), sourceNamespace: 'shop', sourceIp: '198.18.1.10', destinationWorkload: db, destinationPort: 5432 };
  const fromBatch: AuthorizationRequest = { ...fromWeb, sourcePrincipal: spiffeId('shop', 'batch') };
  const next = state([onlyWeb]);
  let lookups = 0;
  const counting = { ...next, policiesFor: (w: Parameters<typeof next.policiesFor>[0]) => { lookups += 1; return next.policiesFor(w); }, workloadByIp: (ip: string) => next.workloadByIp(ip), mtlsModeFor: (w: Parameters<typeof next.mtlsModeFor>[0]) => next.mtlsModeFor(w) };
  const judge = recheckJudge(counting);
  const conns = Array.from({ length: 1000 }, (_, i) => ({ listener: 'inbound-tunnel' as const, authorized: [i % 2 === 0 ? fromWeb : { ...fromBatch }] }));
  const endings = conns.map((c) => judge(c));
  assert.deepEqual(endings.map((e) => e?.flags), conns.map((_, i) => (i % 2 === 0 ? undefined : 'DENY')));
  assert.equal(lookups, 2, 'two distinct requests, two decisions');
  assert.deepEqual(judge({ listener: 'inbound-tunnel', authorized: [fromWeb, fromBatch] })?.flags, 'DENY', 'any of its requests denied ends it');
  assert.equal(judge({ listener: 'inbound-tunnel', authorized: [{ ...fromWeb, destinationPort: 6432 }] }), undefined, 'another port is another request');
  assert.equal(lookups, 3);
});

/** A round trip on an open connection. */
async function echoes(s: Socket, text: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), 2000);
    s.once('data', (d: Buffer) => {
      clearTimeout(t);
      resolve(d.toString() === text);
    });
    s.write(text);
  });
}

test('200 open connections, a policy change that leaves out half: that half is reset within a second, the rest keeps transferring', async (t) => {
  const WEB = spiffeId('shop', 'web');
  const BATCH = spiffeId('shop', 'batch');
  const n = await twoNodes(t, { clientCredentials: testCredentials([spiffeId('shop', 'client'), WEB, BATCH]) });
  n.mesh.addWorkload(workload('web', 'shop', '127.0.1.21', 'a'));
  n.mesh.addWorkload(workload('batch', 'shop', '127.0.1.22', 'a'));
  const open: { from: 'web' | 'batch'; s: Socket }[] = [];
  for (let i = 0; i < 100; i++) {
    for (const from of ['web', 'batch'] as const) {
      const c = await dialCaptured(n.outboundAddress, from === 'web' ? '127.0.1.21' : '127.0.1.22', VIP, n.table);
      open.push({ from, s: c });
    }
  }
  for (const { s } of open) assert.ok(await echoes(s, 'before'), 'every connection works before the change');
  const endings = open.map(({ s }) => closure(s));

  const next = state([onlyWeb]);
  const started = performance.now();
  const closed = await n.connections.endWhere((c) => recheckEnding(next, c));
  assert.equal(closed, 200, 'the 100 batch connections, on both agents (outbound and inbound-tunnel)');
  const batchEndings = await Promise.all(open.map((o, i) => (o.from === 'batch' ? endings[i] : undefined)).filter((e) => e !== undefined));
  const ms = performance.now() - started;
  assert.ok(batchEndings.every((e) => e === 'ECONNRESET'), `reset: ${[...new Set(batchEndings)].join(', ')}`);
  assert.ok(ms < 1000, `closed within a second (${Math.round(ms)} ms)`);
  for (const { from, s } of open) if (from === 'web') assert.ok(await echoes(s, 'after'), 'the allowed half keeps transferring');
  await until(() => n.logLines.filter((l) => l.msg === 'connection' && l.flags === 'DENY').length === 200, 3000, 'records');
  assert.match(String(n.logLines.find((l) => l.flags === 'DENY')?.detail), /^closed by a policy change: no rule of the 1 ALLOW policy/);
  for (const { s } of open) s.destroy();
});
