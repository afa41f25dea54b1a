// The plaintext inbound listener (15006): captured traffic from outside the mesh reaches a
// local enrolled pod under policy with no identity, and is refused otherwise.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';

import type { AuthorizationRequest } from '../../../src/model/authorize.ts';
import type { Authorizer } from '../../../src/proxy/contracts.ts';
import { ResponseFlags } from '../../../src/proxy/flags.ts';
import { InboundPlain } from '../../../src/proxy/inbound-plain.ts';
import { ConnectionTelemetry } from '../../../src/telemetry/connection-telemetry.ts';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Writable } from 'node:stream';
import {
  OriginalDestinations, TestMesh, allowAll, closure, dialCaptured, echoServer, exchange, until, workload,
} from './harness.ts';

async function node(t: TestContext, authorize: Authorizer = allowAll) {
  const mesh = new TestMesh();
  const pod = mesh.addWorkload(workload('web', 'shop', '127.0.5.1', 'b'));
  mesh.addWorkload(workload('other', 'shop', '127.0.5.2', 'c'));
  mesh.addWorkload(workload('legacy', 'shop', '127.0.5.3', 'b', { enrolled: false }));
  const echo = await echoServer('127.0.5.1');
  const table = new OriginalDestinations();
  const lines: Record<string, unknown>[] = [];
  const logger = pino(new Writable({
    write(c: Buffer, _e, cb) {
      for (const l of c.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  }));
  const registry = new Registry();
  const observer = new ConnectionTelemetry({ registry, logger, handshakeLogsPerSecond: 3 });
  const inbound = new InboundPlain({ originalDestination: table.reader, mesh, authorize, observer }, { nodeName: 'b', host: '127.0.0.2', port: 0 });
  const address = await inbound.listen();
  t.after(async () => {
    await inbound.destroy();
    await echo.close();
  });
  return {
    pod, echo, lines, inbound, mesh, registry,
    dial: (dst: { address: string; port: number }) => dialCaptured(address, '127.0.6.6', dst, table),
  };
}

test('plaintext to a local enrolled pod is spliced, policy sees no principal, the record says none', async (t) => {
  const seen: AuthorizationRequest[] = [];
  const n = await node(t, (r) => {
    seen.push(r);
    return allowAll();
  });
  const back = await exchange(await n.dial({ address: '127.0.5.1', port: n.echo.address.port }), Buffer.from('plain'));
  assert.equal(back.toString(), 'plain');
  assert.equal(seen[0]?.sourcePrincipal, undefined);
  assert.equal(seen[0]?.sourceIp, '127.0.6.6');
  await until(() => n.lines.some((l) => l.msg === 'connection'), 3000, 'record');
  const line = n.lines.find((l) => l.msg === 'connection');
  assert.equal(line?.security, 'none');
  assert.equal(line?.reporter, 'destination');
  assert.equal(line?.flags, ResponseFlags.OK);
  assert.equal(line?.bytes_received, 5);
});

test('plaintext refused: pod elsewhere, pod not in the mesh, policy', async (t) => {
  const n = await node(t, (r) => (r.destinationPort === 9 ? { allowed: false, reason: 'port 9' } : allowAll()));
  const cases: Array<[{ address: string; port: number }, string]> = [
    [{ address: '127.0.5.2', port: n.echo.address.port }, ResponseFlags.BAD_REQUEST],
    [{ address: '127.0.5.3', port: n.echo.address.port }, ResponseFlags.BAD_REQUEST],
    [{ address: '127.0.5.1', port: 9 }, ResponseFlags.DENIED],
  ];
  const refused = (): Record<string, unknown>[] => n.lines.filter((l) => l.msg === 'inbound plaintext connection refused');
  for (const [dst, flags] of cases) {
    const before = refused().length;
    assert.equal(await closure(await n.dial(dst)), 'ECONNRESET');
    await until(() => refused().length === before + 1, 3000, 'record');
    assert.equal(refused().at(-1)?.reason, flags === ResponseFlags.DENIED ? 'policy_denied' : 'not_a_mesh_pod', `${dst.address}:${dst.port}`);
  }
  assert.equal(n.lines.filter((l) => l.msg === 'connection').length, 0, 'refusals are not access-log lines (anything on the network can make them)');
  assert.equal(n.inbound.connections, 0);
});

test('STRICT: plaintext to the pod is reset whatever the policy, counted by reason, logged at a bounded rate', async (t) => {
  let asked = 0;
  const n = await node(t, () => {
    asked++;
    return allowAll();
  });
  n.mesh.strict.add(n.pod.key);
  let accepted = 0;
  n.echo.server.on('connection', () => accepted++);
  for (let i = 0; i < 5; i++) assert.equal(await closure(await n.dial({ address: '127.0.5.1', port: n.echo.address.port })), 'ECONNRESET');
  assert.equal(asked, 0, 'policy is not consulted: STRICT refuses plaintext first');
  assert.equal(accepted, 0, 'nothing reached the pod');
  const metric = async (): Promise<number> => ((await n.registry.getSingleMetric('weft_inbound_plaintext_refused_total')?.get())?.values ?? [])
    .filter((v) => v.labels.reason === 'mtls_required').reduce((a, v) => a + v.value, 0);
  for (let i = 0; i < 100 && (await metric()) < 5; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await metric(), 5, 'every refusal counted');
  const lines = n.lines.filter((l) => l.msg === 'inbound plaintext connection refused');
  assert.equal(lines.length, 3, 'three lines per second at most (handshakeLogsPerSecond: 3)');
  assert.equal(lines[0]?.reason, 'mtls_required');
  assert.match(String(lines[0]?.detail), /shop\/web takes mTLS only \(PeerAuthentication shop\/strict is STRICT\)/);
  const closed = (await n.registry.getSingleMetric('istio_tcp_connections_closed_total')?.get())?.values ?? [];
  assert.equal(closed.filter((v) => v.labels.response_flags === 'MTLS_REQUIRED' && v.labels.connection_security_policy === 'none').reduce((a, v) => a + v.value, 0), 5);

  n.mesh.strict.delete(n.pod.key);
  const back = await exchange(await n.dial({ address: '127.0.5.1', port: n.echo.address.port }), Buffer.from('permissive again'));
  assert.equal(back.toString(), 'permissive again');
});
