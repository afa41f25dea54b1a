// L7 AuthorizationPolicy in the HTTP layer: the destination agent admits a tunnel stream
// carrying HTTP for per-request checks (a DENY /admin* does not refuse it) and checks each
// request with its method and path (403 `RBAC: access denied`, gRPC PERMISSION_DENIED), while
// the source agent, which here holds no policy for the pod, lets everything through.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2connect, type IncomingHttpHeaders } from 'node:http2';
import { Client } from 'undici';
import { authorize, compilePolicy, NO_POLICIES } from '../../../src/model/authorize.ts';
import { parseAuthorizationPolicy } from '../../../src/model/policy-kind.ts';
import { requestAuthorizationStep } from '../../../src/proxy/http/authorization-step.ts';
import type { Authorizer } from '../../../src/proxy/contracts.ts';
import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { until } from './harness.ts';
import { l7Mesh } from './l7-harness.ts';

function policy(name: string, spec: object) {
  const r = parseAuthorizationPolicy({ apiVersion: 'weft.dev/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'shop' }, spec });
  assert.deepEqual(r.issues, []);
  return compilePolicy(r.policy ?? assert.fail());
}

const allow = policy('allow', { rules: [{ to: [{ operation: { methods: ['GET'], paths: ['/public*'] } }] }, { to: [{ operation: { paths: ['/shop.Api/*'] } }] }] });
const deny = policy('deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin*', '/shop.Api/Drop'] } }] }] });
const destination: Authorizer = (r) => authorize({ policiesFor: () => ({ ...NO_POLICIES, allow: [allow], deny: [deny] }) }, r);

test('destination agent: GET /public 200, POST /admin 403, an unlisted path 403; gRPC Drop PERMISSION_DENIED; the source side allowed all', async (t) => {
  const n = await l7Mesh(t, { destinationAuthorize: destination, inboundSteps: (a) => [requestAuthorizationStep(a)] });
  const remote = n.backends[2] ?? assert.fail();
  const ip = remote.pod.ip ?? '';
  const client = new Client(`http://${ip}:${remote.port}`, {
    pipelining: 1, connect: (_o, cb) => { n.dialTo({ address: ip, port: remote.port }).then((s) => cb(null, s), (e: Error) => cb(e, null)); },
  });
  t.after(() => client.destroy());
  const call = async (method: 'GET' | 'POST', path: string): Promise<[number, string]> => {
    const r = await client.request({ method, path });
    return [r.statusCode, await r.body.text()];
  };
  assert.deepEqual(await call('GET', '/public/x'), [200, `web-3 GET /public/x 0`]);
  assert.deepEqual(await call('POST', '/admin'), [403, 'RBAC: access denied']);
  assert.deepEqual(await call('GET', '/private'), [403, 'RBAC: access denied']);
  assert.deepEqual(await call('GET', '/public'), [200, 'web-3 GET /public 0'], 'the same connection still serves');

  const session = await n.dialTo({ address: ip, port: remote.h2Port }).then((s) => h2connect(`http://${ip}:${remote.h2Port}`, { createConnection: () => s }));
  session.on('error', () => undefined);
  t.after(() => session.close());
  const grpc = (path: string): Promise<string | undefined> => new Promise((resolve, reject) => {
    const s = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' }, { endStream: true });
    let status: string | undefined;
    s.on('response', (h) => { status ??= h['grpc-status'] as string | undefined; });
    s.on('trailers', (h: IncomingHttpHeaders) => { status ??= h['grpc-status'] as string | undefined; });
    s.on('data', () => undefined);
    s.on('end', () => resolve(status));
    s.on('error', reject);
  });
  assert.equal(await grpc('/shop.Api/Get'), '0');
  assert.equal(await grpc('/shop.Api/Drop'), '7');

  await until(() => n.inboundRequests.records.filter((r) => r.outcome !== undefined).length === 6, 3000, 'destination records');
  const denied = n.inboundRequests.records.filter((r) => r.outcome?.flags === ResponseFlags.DENIED);
  assert.deepEqual(denied.map((r) => r.description?.path).sort(), ['/admin', '/private', '/shop.Api/Drop']);
  assert.ok(n.requests.records.every((r) => r.outcome?.flags !== ResponseFlags.DENIED), 'the source agent denied nothing');
});
