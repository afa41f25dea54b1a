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
  const observer = new ConnectionTelemetry({ registry: new Registry(), logger });
  const inbound = new InboundPlain({ originalDestination: table.reader, mesh, authorize, observer }, { nodeName: 'b', host: '127.0.0.2', port: 0 });
  const address = await inbound.listen();
  t.after(async () => {
    await inbound.destroy();
    await echo.close();
  });
  return {
    pod, echo, lines, inbound,
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
  for (const [dst, flags] of cases) {
    const before = n.lines.filter((l) => l.msg === 'connection').length;
    assert.equal(await closure(await n.dial(dst)), 'ECONNRESET');
    await until(() => n.lines.filter((l) => l.msg === 'connection').length === before + 1, 3000, 'record');
    assert.equal(n.lines.filter((l) => l.msg === 'connection').at(-1)?.flags, flags, `${dst.address}:${dst.port}`);
  }
  assert.equal(n.inbound.connections, 0);
});
