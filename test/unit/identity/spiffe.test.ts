import assert from 'node:assert/strict';
import { test } from 'node:test';

import { isWeftError } from '../../../src/core/errors.ts';
import { normalizeSerial } from '../../../src/identity/pem.ts';
import { parseSpiffeId, spiffeId } from '../../../src/identity/spiffe.ts';

test('SPIFFE ids: built from Kubernetes names, parsed back, malformed ones refused', () => {
  assert.deepEqual({ ...spiffeId('shop', 'web') }, {
    trustDomain: 'cluster.local',
    namespace: 'shop',
    serviceAccount: 'web',
    uri: 'spiffe://cluster.local/ns/shop/sa/web',
  });
  assert.equal(spiffeId('a', 'b.c-d', 'example.org').uri, 'spiffe://example.org/ns/a/sa/b.c-d');
  assert.deepEqual({ ...parseSpiffeId('spiffe://example.org/ns/a/sa/b.c-d') }, { ...spiffeId('a', 'b.c-d', 'example.org') });

  const bad = [
    'spiffe://cluster.local/ns/shop/sa/web/extra',
    'spiffe://cluster.local/ns/shop',
    'spiffe://cluster.local/sa/web/ns/shop',
    'https://cluster.local/ns/shop/sa/web',
    'spiffe://Cluster.Local/ns/shop/sa/web',
    'spiffe://cluster.local:443/ns/shop/sa/web',
    'spiffe://cluster.local/ns/Shop/sa/web',
    'spiffe://cluster.local/ns/shop/sa/-web',
    `spiffe://cluster.local/ns/${'a'.repeat(64)}/sa/web`,
    'spiffe://cluster.local/ns/shop/sa/web?x=1',
    '',
  ];
  for (const uri of bad) {
    assert.throws(() => parseSpiffeId(uri), (err: unknown) => isWeftError(err, 'WEFT_IDENTITY_INVALID_ID'), uri);
  }
  assert.equal(parseSpiffeId(`spiffe://cluster.local/ns/${'a'.repeat(63)}/sa/web`).namespace.length, 63);
});

test('serials have one spelling', () => {
  const table: Array<[string, string]> = [
    ['7FABCDEF', '7fabcdef'],
    ['00ff01', 'ff01'],
    ['00:FF:01', 'ff01'],
    ['0', '0'],
    ['000', '0'],
  ];
  for (const [input, expected] of table) assert.equal(normalizeSerial(input), expected, input);
  assert.throws(() => normalizeSerial('xyz'), (err: unknown) => isWeftError(err, 'WEFT_IDENTITY_SERIAL_INVALID'));
});
