// classifyConnectFailure: which connect failures end the connection, which try another
// endpoint, and which count against the endpoint. A table.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { classifyConnectFailure, isRetriableReset, type ConnectFailure } from '../../../src/proxy/connect-failure.ts';
import { ProxyErrors, TunnelRefusedError, proxyError } from '../../../src/proxy/errors.ts';
import { ResponseFlags } from '../../../src/proxy/flags.ts';

const refused = proxyError(ProxyErrors.CONNECT_FAILED, 'connect to 10.0.0.1:80 failed: ECONNREFUSED');
const cases: Array<[string, { error: unknown; drained?: boolean; clientGone?: boolean }, Pick<ConnectFailure, 'kind'> & { flags: string; eject?: boolean; security?: string }]> = [
  ['drained wins over any error', { error: refused, drained: true, clientGone: true }, { kind: 'stop', flags: ResponseFlags.DRAINED, security: 'unknown' }],
  ['client gone while connecting', { error: refused, clientGone: true }, { kind: 'stop', flags: ResponseFlags.DOWNSTREAM_RESET, security: 'unknown' }],
  ['destination agent denied (403)', { error: new TunnelRefusedError(403, 'x answered 403') }, { kind: 'stop', flags: ResponseFlags.DENIED, security: 'mutual_tls' }],
  ['destination agent: malformed (400)', { error: new TunnelRefusedError(400, 'x answered 400') }, { kind: 'stop', flags: ResponseFlags.BAD_REQUEST, security: 'mutual_tls' }],
  ['misdirected (421): another endpoint, ejectable', { error: new TunnelRefusedError(421, 'x answered 421') }, { kind: 'next', flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, eject: true }],
  ['pod refused behind the tunnel (503)', { error: new TunnelRefusedError(503, 'x answered 503') }, { kind: 'next', flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, eject: true }],
  ['connect refused', { error: refused }, { kind: 'next', flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, eject: true }],
  ['connect timeout', { error: proxyError(ProxyErrors.CONNECT_TIMEOUT, 't') }, { kind: 'next', flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, eject: true }],
  ['tunnel broke', { error: proxyError(ProxyErrors.TUNNEL_BROKEN, 'b') }, { kind: 'next', flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, eject: true }],
  ['no local certificate: not the endpoint\'s fault', { error: proxyError(ProxyErrors.NO_CREDENTIALS, 'n') }, { kind: 'next', flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, eject: false }],
  ['a plain Error', { error: new Error('boom') }, { kind: 'next', flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, eject: true }],
  ['a thrown string', { error: 'weird' }, { kind: 'next', flags: ResponseFlags.UPSTREAM_CONNECT_FAILURE, eject: true }],
];

for (const [name, input, want] of cases) {
  test(`connect failure: ${name}`, () => {
    const got = classifyConnectFailure({ drained: false, clientGone: false, ...input });
    assert.equal(got.kind, want.kind);
    assert.equal(got.ending[0], want.flags);
    assert.equal(typeof got.ending[1], 'string');
    if (got.kind === 'next') assert.equal(got.eject, want.eject);
    else assert.equal(got.security, want.security);
  });
}

test('connect failure: the detail names the cause', () => {
  const got = classifyConnectFailure({ error: refused, drained: false, clientGone: false });
  assert.match(got.ending[1] ?? '', /WEFT_PROXY_CONNECT_FAILED.*ECONNREFUSED/);
});

const resets: Array<[string, unknown, string, boolean]> = [
  ['a refused HTTP/2 stream, POST', proxyError(ProxyErrors.STREAM_REFUSED, 'refused'), 'POST', true],
  ['a stale pooled connection, GET', Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }), 'GET', true],
  ['a stale pooled connection, PUT (idempotent)', Object.assign(new Error('reset'), { code: 'ECONNRESET' }), 'PUT', true],
  ['a stale pooled connection, POST: not retried', Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }), 'POST', false],
  ['a stale pooled connection, PATCH: not retried', Object.assign(new Error('epipe'), { code: 'EPIPE' }), 'PATCH', false],
  ['a timeout is not a stale connection', Object.assign(new Error('t'), { code: 'UND_ERR_HEADERS_TIMEOUT' }), 'GET', false],
  ['a plain error', new Error('boom'), 'GET', false],
];
for (const [name, err, method, want] of resets) {
  test(`retriable reset: ${name}`, () => assert.equal(isRetriableReset(err, method), want));
}
