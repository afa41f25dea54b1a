import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSpiffeId, spiffeId, spiffeUri, tryParseSpiffeId } from '../../../src/model/spiffe.ts';
import { cidrContains, parseCidr } from '../../../src/model/cidr.ts';
import { isWeftError } from '../../../src/core/errors.ts';
import { ModelErrors } from '../../../src/model/errors.ts';

test('spiffe ids are built and parsed back', () => {
  assert.equal(spiffeUri('shop', 'web'), 'spiffe://cluster.local/ns/shop/sa/web');
  const id = parseSpiffeId('spiffe://example.org/ns/a-b/sa/my.sa');
  assert.deepEqual({ ...id }, { trustDomain: 'example.org', namespace: 'a-b', serviceAccount: 'my.sa', uri: 'spiffe://example.org/ns/a-b/sa/my.sa' });
  assert.equal(spiffeId('x', 'y', 'td').uri, 'spiffe://td/ns/x/sa/y');
});

test('malformed spiffe ids are refused with WEFT_MODEL_BAD_SPIFFE_ID', () => {
  const bad = [
    'http://cluster.local/ns/a/sa/b', 'spiffe://cluster.local/ns/a/sa/b/', 'spiffe://cluster.local/ns/a/sa/b?x=1',
    'spiffe://cluster.local/ns/a/sa/b#f', 'spiffe://cluster.local:443/ns/a/sa/b', 'spiffe://Cluster.local/ns/a/sa/b',
    'spiffe://cluster.local/ns/A/sa/b', 'spiffe://cluster.local/ns//sa/b', 'spiffe://cluster.local/sa/b/ns/a',
    'spiffe://cluster.local/ns/a/sa/b%2F', 'spiffe:///ns/a/sa/b', 'spiffe://cluster.local/ns/a/sa/a..b', '',
    `spiffe://cluster.local/ns/${'a'.repeat(64)}/sa/b`,
  ];
  for (const s of bad) {
    assert.throws(() => parseSpiffeId(s), (e: unknown) => isWeftError(e, ModelErrors.BAD_SPIFFE_ID), s);
    assert.equal(tryParseSpiffeId(s), undefined, s);
  }
  assert.throws(() => spiffeId('ns', 'sa', 'bad domain'), (e: unknown) => isWeftError(e, ModelErrors.BAD_SPIFFE_ID));
});

test('CIDRs', () => {
  const c = parseCidr('198.18.0.0/15');
  const table: [string, boolean][] = [['198.18.0.1', true], ['198.19.255.255', true], ['198.20.0.0', false], ['198.17.255.255', false], ['::1', false]];
  for (const [ip, want] of table) assert.equal(cidrContains(c, ip), want, ip);
  assert.equal(parseCidr('10.1.2.3').text, '10.1.2.3/32');
  assert.ok(cidrContains(parseCidr('0.0.0.0/0'), '255.255.255.255'));
  for (const bad of ['10.0.0.1/24', '10.0.0.0/33', '10.0.0/8', 'x/8', '10.0.0.0/', '10.0.0.0/08a']) {
    assert.throws(() => parseCidr(bad), (e: unknown) => isWeftError(e, ModelErrors.BAD_CIDR), bad);
  }
});
