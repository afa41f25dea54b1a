// Path normalisation before route and policy matching: RFC 3986 §6.2.2 on the path part,
// as Istio's default (BASE) does; one row per rule, and the targets that are refused.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { normalizeRequestTarget } from '../../../src/proxy/http/path-normalize.ts';

const normalised: Array<[string, string, string]> = [
  ['/', '/', 'the root'],
  ['/a/b?x=1', '/a/b?x=1', 'already canonical'],
  ['/public/../admin', '/admin', 'dot-dot segment'],
  ['/a/./b/.', '/a/b/', 'dot segments, a trailing one leaves the slash'],
  ['/../../etc', '/etc', 'dot-dot above the root stays at the root'],
  ['/a/b/..', '/a/', 'a trailing dot-dot'],
  ['/%61dmin', '/admin', 'an encoded unreserved letter is decoded'],
  ['/a/%2e%2e/b', '/b', 'encoded dots are dots'],
  ['/a%2fb', '/a%2Fb', 'an encoded slash stays encoded (hex upper-cased)'],
  ['/a%3Fb?c=%2e', '/a%3Fb?c=%2e', 'the query is never touched'],
  ['\\admin', '/admin', 'a backslash is a slash'],
  ['/a\\..\\b', '/b', 'backslash segments'],
  ['//double//slash', '//double//slash', 'slashes are not merged'],
  ['/frag#x?y', '/frag', 'the fragment is dropped'],
  ['/..?q=/../', '/?q=/../', 'a query that looks like a path'],
  ['/%7euser', '/~user', 'tilde is unreserved'],
  ['*', '*', 'asterisk-form (OPTIONS *) is left alone'],
];

for (const [input, want, why] of normalised) {
  test(`normalizeRequestTarget ${JSON.stringify(input)} -> ${JSON.stringify(want)} (${why})`, () => {
    assert.deepEqual(normalizeRequestTarget(input), { ok: true, target: want });
  });
}

const refused: Array<[string, RegExp]> = [
  ['http://evil/admin', /not an absolute path/],
  ['admin', /not an absolute path/],
  ['/a%zzb', /broken percent-encoding/],
  ['/a%2', /broken percent-encoding/],
  ['/a\u0000b', /control character/],
];

for (const [input, reason] of refused) {
  test(`normalizeRequestTarget refuses ${JSON.stringify(input)}`, () => {
    const r = normalizeRequestTarget(input);
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.reason, reason);
  });
}

test('dot segments are removed as RFC 3986 §5.2.4 does in its examples', () => {
  assert.deepEqual(normalizeRequestTarget('/a/b/c/./../../g'), { ok: true, target: '/a/g' });
  assert.deepEqual(normalizeRequestTarget('/mid/content=5/../6'), { ok: true, target: '/mid/6' });
});
