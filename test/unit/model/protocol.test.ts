import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isHttpProtocol, protocolFor, type PortProtocol } from '../../../src/model/protocol.ts';

const CASES: readonly [name: string | undefined, appProtocol: string | undefined, want: PortProtocol][] = [
  // appProtocol, Kubernetes standard names and Istio's names
  [undefined, 'http', 'http'],
  [undefined, 'HTTP', 'http'],
  [undefined, 'kubernetes.io/h2c', 'http2'],
  [undefined, 'http2', 'http2'],
  [undefined, 'grpc', 'grpc'],
  [undefined, 'grpc-web', 'http'],
  [undefined, 'kubernetes.io/ws', 'http'],
  [undefined, 'kubernetes.io/wss', 'tcp'],
  [undefined, 'tcp', 'tcp'],
  [undefined, 'https', 'tcp'],
  [undefined, 'tls', 'tcp'],
  [undefined, 'mysql', 'tcp'],
  [undefined, 'example.com/custom', 'undeclared'],
  // appProtocol wins over the name, also when it is not recognised
  ['tcp-db', 'http', 'http'],
  ['http-web', 'tcp', 'tcp'],
  ['http-web', 'example.com/custom', 'undeclared'],
  // Istio's port-name prefixes
  ['http', undefined, 'http'],
  ['http-web', undefined, 'http'],
  ['http2-api', undefined, 'http2'],
  ['grpc', undefined, 'grpc'],
  ['grpc-api', undefined, 'grpc'],
  ['grpc-web-ui', undefined, 'http'],
  ['tcp-db', undefined, 'tcp'],
  ['tls-x', undefined, 'tcp'],
  ['redis', undefined, 'tcp'],
  // no declaration
  ['web', undefined, 'undeclared'],
  ['httpx', undefined, 'undeclared'],
  ['-http', undefined, 'undeclared'],
  ['metrics-http', undefined, 'undeclared'],
  [undefined, undefined, 'undeclared'],
];

test('protocolFor: appProtocol, then the Istio port-name prefix, else undeclared', () => {
  for (const [name, appProtocol, want] of CASES) {
    assert.equal(protocolFor({ name, appProtocol }), want, `name ${String(name)}, appProtocol ${String(appProtocol)}`);
  }
});

test('isHttpProtocol: routes attach to http, http2 and grpc ports only', () => {
  assert.deepEqual((['http', 'http2', 'grpc', 'tcp', 'undeclared'] as const).filter(isHttpProtocol), ['http', 'http2', 'grpc']);
});
