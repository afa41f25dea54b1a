import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorize, matchesPattern, type AuthorizationRequest } from '../../../src/model/authorize.ts';
import { pod, policy, state } from './fixture.ts';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const OTHER = 'spiffe://cluster.local/ns/other/sa/x';

const s = state([
  pod('shop', 'locked', { node: 'n1', ip: '198.18.1.40', labels: { app: 'locked' } }),
  pod('shop', 'open', { node: 'n1', ip: '198.18.1.41', labels: { app: 'open' } }),
  pod('shop', 'picky', { node: 'n1', ip: '198.18.1.42', labels: { app: 'picky' } }),
  pod('shop', 'ipcheck', { node: 'n1', ip: '198.18.1.43', labels: { app: 'ipcheck' } }),
  policy('shop', 'db-allow-web', {
    selector: { matchLabels: { app: 'db' } }, action: 'ALLOW',
    rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }], to: [{ operation: { ports: ['5432'] } }] }],
  }),
  policy('shop', 'deny-legacy', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['legacy'] } }] }] }),
  policy('weft-system', 'deny-bad-ips', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['198.18.66.0/24'] } }] }] }),
  policy('shop', 'web-allow-all', { selector: { matchLabels: { app: 'web' } }, rules: [{}] }),
  policy('shop', 'web-admin-needs-mtls', {
    selector: { matchLabels: { app: 'web' } }, action: 'DENY',
    rules: [{ from: [{ source: { notPrincipals: ['*'] } }], to: [{ operation: { ports: [9090] } }] }],
  }),
  policy('shop', 'db-dry', {
    selector: { matchLabels: { app: 'db' } }, action: 'DENY',
    rules: [{ from: [{ source: { principals: ['*/sa/web'] } }], to: [{ operation: { notPorts: [5432] } }] }],
  }, { 'weft.dev/dry-run': 'true' }),
  policy('shop', 'lockdown', { selector: { matchLabels: { app: 'locked' } } }),
  policy('shop', 'deny-nothing', { selector: { matchLabels: { app: 'open' } }, action: 'DENY' }),
  policy('shop', 'picky', {
    selector: { matchLabels: { app: 'picky' } },
    rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop*'], notNamespaces: ['shop-blocked'] } }] }],
  }),
  policy('shop', 'ipcheck', {
    selector: { matchLabels: { app: 'ipcheck' } },
    rules: [{ from: [{ source: { ipBlocks: ['198.18.0.0/16'], notIpBlocks: ['198.18.5.0/24'] } }] }],
  }),
]);

interface Case {
  readonly name: string;
  readonly from: { principal?: string; ip?: string };
  readonly to: string;
  readonly port: number;
  readonly allowed: boolean;
  readonly policy?: string;
  readonly dryRun?: { allowed: boolean; policy?: string };
}

const CASES: readonly Case[] = [
  { name: 'ALLOW rule matches principal and port', from: { principal: WEB }, to: 'shop/db-1', port: 5432, allowed: true, policy: 'shop/db-allow-web' },
  { name: 'ALLOW policies apply but none matches the port', from: { principal: WEB }, to: 'shop/db-1', port: 5433, allowed: false, dryRun: { allowed: false, policy: 'shop/db-dry' } },
  { name: 'namespace-wide DENY beats a matching ALLOW', from: { principal: 'spiffe://cluster.local/ns/legacy/sa/web' }, to: 'shop/db-1', port: 5432, allowed: false, policy: 'shop/deny-legacy' },
  { name: 'plaintext source matches no principal rule', from: { ip: '198.18.1.20' }, to: 'shop/db-1', port: 5432, allowed: false },
  { name: 'root-namespace DENY applies mesh-wide', from: { principal: WEB, ip: '198.18.66.5' }, to: 'shop/db-1', port: 5432, allowed: false, policy: 'weft-system/deny-bad-ips' },
  { name: 'ALLOW with an empty rule allows anything', from: { ip: '198.18.1.20' }, to: 'shop/web-1', port: 8080, allowed: true, policy: 'shop/web-allow-all' },
  { name: 'notPrincipals * denies plaintext', from: { ip: '198.18.1.20' }, to: 'shop/web-1', port: 9090, allowed: false, policy: 'shop/web-admin-needs-mtls' },
  { name: 'notPrincipals * lets mTLS through', from: { principal: OTHER }, to: 'shop/web-1', port: 9090, allowed: true, policy: 'shop/web-allow-all' },
  { name: 'no ALLOW policy applies: allowed', from: { ip: '198.18.1.1' }, to: 'legacy/old-1', port: 80, allowed: true },
  { name: 'root DENY also covers workloads outside the mesh', from: { ip: '198.18.66.1' }, to: 'legacy/old-1', port: 80, allowed: false, policy: 'weft-system/deny-bad-ips' },
  { name: 'ALLOW without rules allows nothing', from: { principal: WEB }, to: 'shop/locked', port: 80, allowed: false },
  { name: 'DENY without rules denies nothing', from: { principal: WEB }, to: 'shop/open', port: 80, allowed: true },
  { name: 'prefix wildcard principal matches', from: { principal: WEB }, to: 'shop/picky', port: 80, allowed: true, policy: 'shop/picky' },
  { name: 'prefix wildcard does not match another namespace', from: { principal: OTHER }, to: 'shop/picky', port: 80, allowed: false },
  { name: 'notNamespaces carves out of a prefix', from: { principal: 'spiffe://cluster.local/ns/shop-blocked/sa/x' }, to: 'shop/picky', port: 80, allowed: false },
  { name: 'prefix wildcard covers a longer namespace', from: { principal: 'spiffe://cluster.local/ns/shop-ok/sa/x' }, to: 'shop/picky', port: 80, allowed: true, policy: 'shop/picky' },
  { name: 'principal required: plaintext fails', from: { ip: '198.18.1.20' }, to: 'shop/picky', port: 80, allowed: false },
  { name: 'ipBlocks match', from: { ip: '198.18.1.1' }, to: 'shop/ipcheck', port: 80, allowed: true, policy: 'shop/ipcheck' },
  { name: 'notIpBlocks carve out', from: { ip: '198.18.5.1' }, to: 'shop/ipcheck', port: 80, allowed: false },
  { name: 'outside ipBlocks', from: { ip: '10.0.0.1' }, to: 'shop/ipcheck', port: 80, allowed: false },
];

for (const c of CASES) {
  test(`authorize: ${c.name}`, () => {
    const dest = s.workload(c.to);
    assert.ok(dest, c.to);
    const principal = c.from.principal;
    const req: AuthorizationRequest = {
      sourcePrincipal: principal,
      sourceNamespace: principal === undefined ? undefined : /\/ns\/([^/]+)\//.exec(principal)?.[1],
      sourceIp: c.from.ip ?? '198.18.1.10',
      destinationWorkload: dest,
      destinationPort: c.port,
    };
    const d = authorize(s, req);
    assert.equal(d.allowed, c.allowed, d.reason);
    assert.equal(d.policy, c.policy, d.reason);
    assert.ok(d.reason.length > 0);
    if (c.dryRun === undefined) {
      if (d.dryRun !== undefined) assert.equal(d.dryRun.allowed, d.allowed, 'a dry-run policy that does not match changes nothing');
    } else {
      assert.equal(d.dryRun?.allowed, c.dryRun.allowed);
      assert.equal(d.dryRun.policy, c.dryRun.policy);
    }
  });
}

test('a dry-run policy never changes the enforced decision', () => {
  const dest = s.workload('shop/db-1');
  assert.ok(dest);
  const d = authorize(s, { sourcePrincipal: WEB, sourceNamespace: 'shop', sourceIp: '198.18.1.10', destinationWorkload: dest, destinationPort: 5432 });
  assert.equal(d.allowed, true);
  assert.deepEqual(d.dryRun, { allowed: true, policy: 'shop/db-allow-web', reason: 'allowed by ALLOW policy shop/db-allow-web' });
});

test('matchesPattern', () => {
  const table: [string, string | undefined, boolean][] = [
    ['*', 'anything', true], ['*', undefined, false], ['a*', 'abc', true], ['a*', 'bac', false],
    ['*c', 'abc', true], ['*c', 'abd', false], ['abc', 'abc', true], ['abc', 'abcd', false], ['abc', undefined, false],
  ];
  for (const [p, v, want] of table) assert.equal(matchesPattern(p, v), want, `${p} vs ${String(v)}`);
});
