// The pure decisions: inbound admission, authority and Forwarded parsing, outbound routing.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { AuthorizationRequest } from '../../../src/model/authorize.ts';
import type { Authorizer } from '../../../src/proxy/contracts.ts';
import { admitInbound, parseAuthority, parseForwardedFor } from '../../../src/proxy/inbound-admission.ts';
import { planHop, resolveDestination } from '../../../src/proxy/outbound-route.ts';
import { workloadName } from '../../../src/proxy/describe.ts';
import { TestMesh, allowAll, denyTo, endpoint, service, workload } from './harness.ts';

function mesh(): TestMesh {
  const m = new TestMesh();
  m.addWorkload(workload('web', 'shop', '198.18.1.1', 'b'));
  m.addWorkload(workload('db', 'shop', '198.18.1.2', 'c'));
  m.addWorkload(workload('legacy', 'old', '198.18.1.3', 'b', { enrolled: false }));
  m.addWorkload(workload('floating', 'shop', '198.18.1.4', 'b', { node: undefined }));
  m.addWorkload(workload('far', 'shop', '198.18.1.5', 'z'));
  m.nodes.set('b', '198.18.0.2');
  m.nodes.set('c', '198.18.0.3');
  return m;
}

test('admitInbound: table', () => {
  const m = mesh();
  const src = 'spiffe://cluster.local/ns/front/sa/gw';
  const cases: Array<{ name: string; target: string; requested?: string; authorize?: Authorizer; want: string }> = [
    { name: 'local enrolled pod', target: '198.18.1.1', want: 'ok' },
    { name: 'unknown address', target: '198.18.9.9', want: '421' },
    { name: 'pod on another node', target: '198.18.1.2', want: '421' },
    { name: 'pod not in the mesh', target: '198.18.1.3', want: '421' },
    { name: 'asked for another identity', target: '198.18.1.1', requested: 'spiffe://cluster.local/ns/shop/sa/db', want: '421' },
    { name: 'asked for its identity', target: '198.18.1.1', requested: 'spiffe://cluster.local/ns/shop/sa/web', want: 'ok' },
    { name: 'policy denies', target: '198.18.1.1', authorize: denyTo('web'), want: '403' },
  ];
  for (const c of cases) {
    const a = admitInbound(m, c.authorize ?? allowAll, {
      nodeName: 'b', target: { address: c.target, port: 8080 }, sourcePrincipal: src, sourceIp: '198.18.2.2', requestedIdentity: c.requested,
    });
    assert.equal(a.ok ? 'ok' : String(a.status), c.want, c.name);
  }
});

test('admitInbound hands policy the peer, its namespace, the source address and the port', () => {
  const seen: AuthorizationRequest[] = [];
  admitInbound(mesh(), (r) => {
    seen.push(r);
    return allowAll();
  }, { nodeName: 'b', target: { address: '198.18.1.1', port: 8080 }, sourcePrincipal: 'spiffe://cluster.local/ns/front/sa/gw', sourceIp: '198.18.2.2' });
  assert.equal(seen.length, 1);
  assert.equal(seen[0]?.sourceNamespace, 'front');
  assert.equal(seen[0]?.sourceIp, '198.18.2.2');
  assert.equal(seen[0]?.destinationPort, 8080);
  assert.equal(seen[0]?.destinationWorkload.name, 'web');
});

test('parseAuthority and parseForwardedFor: tables', () => {
  const authorities: Array<[string | undefined, string | undefined]> = [
    ['10.1.2.3:80', '10.1.2.3:80'], ['[fd00::1]:443', 'fd00::1:443'], ['10.1.2.3', undefined], ['10.1.2.3:0', undefined],
    ['10.1.2.3:65536', undefined], ['web.shop:80', undefined], ['999.1.1.1:80', undefined], [undefined, undefined], ['', undefined],
  ];
  for (const [input, want] of authorities) {
    const a = parseAuthority(input);
    assert.equal(a === undefined ? undefined : `${a.address}:${a.port}`, want, String(input));
  }
  const forwarded: Array<[string | string[] | undefined, string | undefined]> = [
    ['for=10.0.0.1', '10.0.0.1'], ['for="[fd00::2]"', 'fd00::2'], ['proto=https;for=10.0.0.3', '10.0.0.3'],
    [['for=10.0.0.4', 'for=10.0.0.5'], '10.0.0.4'], ['for=unknown', undefined], ['for=_hidden', undefined], [undefined, undefined],
  ];
  for (const [input, want] of forwarded) assert.equal(parseForwardedFor(input), want, String(input));
});

test('resolveDestination and planHop: table', () => {
  const m = mesh();
  const web = m.workloadByIp('198.18.1.1');
  assert.ok(web);
  m.addService(service('web', 'shop', '198.18.100.1', 80, 8080), [endpoint(web, 8080)]);

  const svc = resolveDestination(m, { address: '198.18.100.1', port: 80 });
  assert.equal(svc.kind, 'service');
  assert.equal(svc.kind === 'service' ? svc.endpoints.length : -1, 1);
  assert.equal(resolveDestination(m, { address: '198.18.100.1', port: 81 }).kind, 'external', 'VIP on an unknown port');
  assert.equal(resolveDestination(m, { address: '198.18.1.2', port: 5432 }).kind, 'workload');
  assert.equal(resolveDestination(m, { address: '203.0.113.9', port: 443 }).kind, 'external');

  const hop = (ip: string, node: string): string => {
    const h = planHop(m, node, { ip, port: 1, workload: m.workloadByIp(ip) });
    return h.kind === 'tunnel' ? `tunnel ${h.nodeAddress}` : h.kind;
  };
  assert.equal(hop('198.18.1.1', 'b'), 'direct', 'same node');
  assert.equal(hop('198.18.1.1', 'a'), 'tunnel 198.18.0.2', 'other node');
  assert.equal(hop('198.18.1.3', 'a'), 'direct', 'not in the mesh');
  assert.equal(hop('203.0.113.9', 'a'), 'direct', 'outside the cluster');
  assert.equal(hop('198.18.1.4', 'a'), 'unreachable', 'not scheduled');
  assert.equal(hop('198.18.1.5', 'a'), 'unreachable', 'node address unknown');
});

test('workloadName strips generated pod suffixes only', () => {
  const cases: Array<[string, string]> = [
    ['web-7d9f8c6b5-x2x4k', 'web'], ['my-app-5c8d7b9f6d-bq2zt', 'my-app'], ['agent-x2x4k', 'agent'], ['db-0', 'db-0'],
    ['echo', 'echo'], ['client', 'client'], ['web-aeiou', 'web-aeiou'],
  ];
  for (const [pod, want] of cases) assert.equal(workloadName(pod), want, pod);
});
