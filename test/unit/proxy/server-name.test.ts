import assert from 'node:assert/strict';
import { test } from 'node:test';

import { identityForServerName, serverNameFor } from '../../../src/proxy/server-name.ts';

test('server names: readable for Kubernetes-shaped ids, base32 otherwise, always reversible', () => {
  const cases: Array<[string, RegExp | string]> = [
    ['spiffe://cluster.local/ns/shop/sa/web', 'web.shop.cluster.local.weft'],
    ['spiffe://example.org/ns/a/sa/b', 'b.a.example.org.weft'],
    ['spiffe://cluster.local/ns/shop/sa/web.v2', /\.b32\.weft$/],
    ['spiffe://under_score.td/ns/shop/sa/web', /\.b32\.weft$/],
    ['spiffe://cluster.local/ns/shop/sa/Web', /\.b32\.weft$/],
    ['spiffe://cluster.local/other/path', /\.b32\.weft$/],
    ['spiffe://foo.b32/ns/a/sa/b', /\.b32\.weft$/],
    ['spiffe://cluster.local/ns/' + 'n'.repeat(63) + '/sa/' + 's'.repeat(63), /\.weft$/],
  ];
  for (const [id, want] of cases) {
    const name = serverNameFor(id);
    if (typeof want === 'string') assert.equal(name, want, id);
    else assert.match(name, want, id);
    assert.ok(name.length <= 253, id);
    for (const label of name.split('.')) assert.match(label, /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, `${id}: label ${label}`);
    assert.equal(identityForServerName(name), id, `round trip of ${id}`);
    assert.equal(identityForServerName(name.toUpperCase()), id, `case-insensitive ${id}`);
  }
});

test('names that serverNameFor would not make are not decoded', () => {
  for (const name of ['example.com', 'web.shop.weft', 'a.b.c', 'zzzz.b32.weft', 'web.shop.foo.b32.weft', '']) {
    assert.equal(identityForServerName(name), undefined, name);
  }
});

test('an id too long for any server name is refused by code', () => {
  assert.throws(() => serverNameFor(`spiffe://cluster.local/${'x'.repeat(200)}`), { code: 'WEFT_PROXY_BAD_SERVER_NAME' });
});

test('any string maps to exactly one name and back (so the server needs no table)', () => {
  assert.equal(identityForServerName(serverNameFor('abc')), 'abc');
});
