// Sources that cannot be spoofed (issue 9, point 3): the destination agent takes a tunnel
// stream's `Forwarded: for=` address only when the mesh says it belongs to a workload with
// exactly the peer's verified identity. A real mesh identity that claims another pod's address
// (or one outside the mesh) is judged by its agent's own address instead, so an ipBlocks ALLOW
// rule (the real policy engine over a real AuthorizationPolicy) does not admit it; the mismatch
// is counted and logged.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { authorize } from '../../../src/model/authorize.ts';
import { TunnelRefusedError } from '../../../src/proxy/errors.ts';
import type { AuthorizationRequest } from '../../../src/model/authorize.ts';
import { spiffeId } from '../../support/certs.ts';
import { policy, state } from '../model/fixture.ts';
import { testCredentials, until, workload } from './harness.ts';
import { parseMetrics, total } from './metrics-text.ts';
import { twoNodes, type TwoNodes } from './two-nodes.ts';

// shop/echo admits only sources in 127.0.1.0/24 (the client pod's block); the agents
// themselves are on 127.0.0.0/24.
const POLICIES = state([
  policy('shop', 'only-client-block', { action: 'ALLOW', rules: [{ from: [{ source: { ipBlocks: ['127.0.1.0/24'] } }] }] }),
]);
const byIpBlock = (r: AuthorizationRequest) => authorize(POLICIES, r);

const CLIENT = spiffeId('shop', 'client');
const INTRUDER = spiffeId('shop', 'intruder');

async function mismatches(n: TwoNodes): Promise<number> {
  return total(parseMetrics(await n.registry.metrics()), 'weft_tunnel_forwarded_mismatch_total', {});
}

/** A CONNECT through the pool as `identity`, claiming `forwardedFor`; resolves the answer's status. */
async function connectAs(n: TwoNodes, identity: string, forwardedFor: string): Promise<number> {
  try {
    const stream = await n.pool.open({
      sourceIdentity: identity, destinationIdentity: n.server.identity,
      node: { address: n.inboundAddress.address, port: n.inboundAddress.port },
      target: { address: n.server.ip ?? '', port: n.echo.address.port }, forwardedFor,
    });
    stream.close();
    return 200;
  } catch (err: unknown) {
    if (err instanceof TunnelRefusedError) return err.status;
    throw err;
  }
}

test('a forged Forwarded from a real mesh identity does not pass an ipBlocks ALLOW rule; the honest one does', async (t) => {
  const n = await twoNodes(t, { inboundAuthorize: byIpBlock, clientCredentials: testCredentials([CLIENT, INTRUDER]) });
  n.mesh.addWorkload(workload('intruder', 'shop', '127.0.3.30', 'a'));

  // Honest: shop/client's own pod address, with shop/client's certificate.
  assert.equal(await connectAs(n, CLIENT, '127.0.1.10'), 200, 'the client pod is in the allowed block');
  assert.equal(await mismatches(n), 0);

  // Forged: shop/intruder (a valid mesh certificate) claims the client pod's address, then an
  // address no workload has; both are judged by the peer agent's address (127.0.0.1).
  for (const claimed of ['127.0.1.10', '127.0.1.99']) {
    n.logLines.length = 0;
    assert.equal(await connectAs(n, INTRUDER, claimed), 403, `${claimed}: the ipBlocks rule must not admit a claimed address`);
    const deniedRecord = (): Record<string, unknown> | undefined => n.logLines.find((l) => l.msg === 'connection' && l.reporter === 'destination' && l.flags !== '-');
    await until(() => deniedRecord() !== undefined, 3000, 'the denied connection\'s record');
    const denied = deniedRecord();
    assert.equal((denied?.src as { address?: string } | undefined)?.address?.split(':')[0], '127.0.0.1', 'recorded with the peer agent\'s own address');
    assert.ok(n.logLines.some((l) => typeof l.msg === 'string' && l.msg.includes(`claimed source ${claimed}, which is not a workload of ${INTRUDER}`)), 'logged');
  }
  assert.equal(await mismatches(n), 2, 'weft_tunnel_forwarded_mismatch_total counts both');
});
