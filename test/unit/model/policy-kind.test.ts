import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAuthorizationPolicy } from '../../../src/model/policy-kind.ts';

const body = (spec: unknown, metadata: object = { name: 'p', namespace: 'shop' }): Record<string, unknown> =>
  ({ apiVersion: 'weft.dev/v1alpha1', kind: 'AuthorizationPolicy', metadata, spec });

test('a full policy converts: principals normalized, ports numeric, CIDRs canonical, dry-run from the annotation', () => {
  const r = parseAuthorizationPolicy(body({
    selector: { matchLabels: { app: 'db' } }, action: 'DENY',
    rules: [{
      from: [{ source: { principals: ['cluster.local/ns/a/sa/b', 'spiffe://cluster.local/ns/c/sa/d', '*/sa/x'], ipBlocks: ['10.0.0.1'], notNamespaces: ['kube-*'] } }],
      to: [{ operation: { ports: ['80', 443], notPorts: [8080] } }],
    }],
  }, { name: 'p', namespace: 'shop', annotations: { 'weft.dev/dry-run': 'true' } }));
  assert.deepEqual(r.issues, []);
  assert.deepEqual(r.policy, {
    name: 'p', namespace: 'shop', selector: { app: 'db' }, action: 'DENY', dryRun: true,
    rules: [{
      from: [{ principals: ['spiffe://cluster.local/ns/a/sa/b', 'spiffe://cluster.local/ns/c/sa/d', '*/sa/x'], ipBlocks: ['10.0.0.1/32'], notNamespaces: ['kube-*'] }],
      to: [{ ports: [80, 443], notPorts: [8080] }],
    }],
  });
});

test('defaults: no spec means ALLOW with no rules (allow nothing), namespace "default"', () => {
  const r = parseAuthorizationPolicy({ apiVersion: 'weft.dev/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'p' } });
  assert.deepEqual(r.policy, { name: 'p', namespace: 'default', selector: {}, action: 'ALLOW', rules: [], dryRun: false });
});

test('every problem of a policy is reported, each with its field', () => {
  const r = parseAuthorizationPolicy(body({
    action: 'AUDIT',
    selector: { matchLabels: { app: 5 } },
    rules: [
      { from: [{ source: { principals: ['not a spiffe id'], ipBlocks: ['10.0.0.1/24'], namespaces: ['a*b'] } }], to: [{ operation: { ports: [0, '70000', 'http'], methods: ['GET*'], paths: ['admin'] } }] },
      { when: [{ key: 'x', values: ['1'] }, { key: 'request.auth.claims[iss]', values: ['a'] }, { key: 'request.headers[x-a]' }], from: [{}] },
    ],
    extra: true,
  }, { name: 'p', namespace: 'shop', annotations: { 'weft.dev/dry-run': 'yes' } }));
  assert.equal(r.policy, undefined);
  const fields = r.issues.map((i) => i.field);
  assert.deepEqual(fields.sort(), [
    'metadata.annotations.weft.dev/dry-run',
    'spec.action',
    'spec.extra',
    'spec.rules[0].from[0].source.ipBlocks[0]',
    'spec.rules[0].from[0].source.namespaces[0]',
    'spec.rules[0].from[0].source.principals[0]',
    'spec.rules[0].to[0].operation.methods[0]',
    'spec.rules[0].to[0].operation.paths[0]',
    'spec.rules[0].to[0].operation.ports[0]',
    'spec.rules[0].to[0].operation.ports[1]',
    'spec.rules[0].to[0].operation.ports[2]',
    'spec.rules[1].from[0].source',
    'spec.rules[1].when[0].key',
    'spec.rules[1].when[1].key',
    'spec.rules[1].when[2]',
    'spec.selector.matchLabels.app',
  ]);
  const msg = (f: string) => r.issues.find((i) => i.field === f)?.message ?? '';
  assert.match(msg('spec.rules[0].to[0].operation.methods[0]'), /not an HTTP method/);
  assert.match(msg('spec.rules[0].to[0].operation.paths[0]'), /not a path/);
  assert.match(msg('spec.rules[1].when[0].key'), /not a known key/);
  assert.match(msg('spec.rules[1].when[1].key'), /JWT/);
  assert.match(msg('spec.rules[1].when[2]'), /needs values or notValues/);
  assert.match(msg('spec.rules[0].from[0].source.ipBlocks[0]'), /host bits/);
  assert.match(msg('spec.action'), /ALLOW, DENY/);
});
