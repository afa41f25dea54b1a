// Header handling between hops (RFC 9110 7.6.1), as tables: what passes, what stops, what the
// next hop's protocol adds; Gateway API header modifiers; gRPC detection.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  acceptsTrailers, applyHeaderModifiers, connectionOptions, endToEndRequestHeaders, headersForUpstream, isGrpc, responseHeadersFor,
  type OutHeaders,
} from '../../../src/proxy/http/headers.ts';
import type { RequestHeaders } from '../../../src/proxy/http/contracts.ts';

const requests: Array<[string, RequestHeaders, OutHeaders]> = [
  ['plain end-to-end headers pass', { accept: 'text/html', 'x-a': 'b' }, { accept: 'text/html', 'x-a': 'b' }],
  ['hop-by-hop fields stop', { connection: 'keep-alive', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', te: 'trailers', upgrade: 'h2c', 'http2-settings': 'AAA', 'proxy-connection': 'x', accept: '*/*' }, { accept: '*/*' }],
  ['fields named by Connection stop too', { connection: 'close, X-Hop', 'x-hop': '1', 'x-keep': '2' }, { 'x-keep': '2' }],
  ['pseudo-headers and host travel apart', { ':method': 'GET', ':path': '/', ':authority': 'a', host: 'a', 'x-y': 'z' }, { 'x-y': 'z' }],
  ['expect is answered by the proxy', { expect: '100-continue', 'content-length': '5' }, { 'content-length': '5' }],
  ['x-forwarded-client-cert from a client is dropped', { 'x-forwarded-client-cert': 'By=spiffe://evil', 'x-b': '1' }, { 'x-b': '1' }],
  ['x-forwarded-* and forwarded pass untouched (never read)', { 'x-forwarded-for': '203.0.113.1', forwarded: 'for=203.0.113.1', 'x-forwarded-proto': 'https' }, { 'x-forwarded-for': '203.0.113.1', forwarded: 'for=203.0.113.1', 'x-forwarded-proto': 'https' }],
  ['repeated fields stay a list', { 'set-cookie': ['a=1', 'b=2'] }, { 'set-cookie': ['a=1', 'b=2'] }],
];
for (const [name, input, want] of requests) {
  test(`request headers: ${name}`, () => assert.deepEqual(endToEndRequestHeaders(input), want));
}

test('request headers per upstream protocol: host for HTTP/1.1, te: trailers for HTTP/2 when offered', () => {
  assert.deepEqual(headersForUpstream({ a: '1' }, 'web:80', 'h1', true), { a: '1', host: 'web:80' });
  assert.deepEqual(headersForUpstream({ a: '1' }, 'web:80', 'h2', true), { a: '1', te: 'trailers' });
  assert.deepEqual(headersForUpstream({ a: '1' }, 'web:80', 'h2', false), { a: '1' });
  assert.deepEqual(headersForUpstream({ a: '1' }, undefined, 'h1', false), { a: '1' });
});

test('response headers: hop-by-hop and Connection-named fields stop, the rest passes', () => {
  assert.deepEqual(responseHeadersFor({ ':status': '200', connection: 'x-s', 'x-s': '1', 'keep-alive': 't', 'content-type': 'a/b', 'grpc-status': '0' }), { 'content-type': 'a/b', 'grpc-status': '0' });
});

test('connection options and TE', () => {
  assert.deepEqual([...connectionOptions(['close, X-A', ' x-b '])], ['close', 'x-a', 'x-b']);
  assert.equal(acceptsTrailers('trailers'), true);
  assert.equal(acceptsTrailers('gzip;q=0.5, Trailers'), true);
  assert.equal(acceptsTrailers('gzip'), false);
  assert.equal(acceptsTrailers(undefined), false);
});

test('header modifiers: set replaces, add appends, remove deletes, in order', () => {
  const h: OutHeaders = { 'x-a': 'old', 'x-b': '1', 'x-gone': 'y' };
  applyHeaderModifiers(h, [
    { set: [{ name: 'X-A', value: 'new' }], add: [{ name: 'x-b', value: '2' }, { name: 'x-c', value: '3' }], remove: ['x-gone'] },
    { set: [], add: [{ name: 'x-b', value: '4' }], remove: [] },
  ]);
  assert.deepEqual(h, { 'x-a': 'new', 'x-b': ['1', '2', '4'], 'x-c': '3' });
});

const grpc: Array<[string | undefined, boolean]> = [
  ['application/grpc', true], ['application/grpc+proto', true], ['application/grpc;charset=utf-8', true], ['Application/GRPC', true],
  ['application/grpc-web', false], ['application/json', false], [undefined, false],
];
for (const [ct, want] of grpc) test(`gRPC content type ${String(ct)}: ${want}`, () => assert.equal(isGrpc(ct), want));
