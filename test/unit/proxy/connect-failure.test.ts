// classifyConnectFailure: which connect failures end the connection, which try another
// endpoint, and which count against the endpoint. A table.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { classifyConnectFailure, type ConnectFailure } from '../../../src/proxy/connect-failure.ts';
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
