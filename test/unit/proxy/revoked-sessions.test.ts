// A new CRL ends, at once, the tunnel sessions that used a revoked certificate: the inbound
// agent closes sessions whose client certificate (or its own) is revoked, the pool closes
// sessions whose server certificate (or its own) is revoked; open streams on them end. Either
// side counts the session it ended (reason revoked): whichever agent applies the CRL first
// ends it, and the other sees only a close.

import assert from 'node:assert/strict';
import type { X509Certificate } from 'node:crypto';
import { test } from 'node:test';

import { closure, until } from './harness.ts';
import { parseMetrics, total } from './metrics-text.ts';
import { twoNodes } from './two-nodes.ts';

const uri = (c: X509Certificate): string => (c.subjectAltName ?? '').replace(/^URI:/, '');

for (const [side, revokedIdentity] of [['inbound agent', 'spiffe://cluster.local/ns/shop/sa/client'], ['tunnel pool', 'spiffe://cluster.local/ns/shop/sa/echo']] as const) {
  test(`${side}: sessions that used the certificate of ${revokedIdentity.split('/').pop() ?? ''} are closed; others stay`, async (t) => {
    const n = await twoNodes(t);
    const s = await n.dial();
    s.write('before');
    await new Promise<void>((resolve) => s.once('data', () => resolve()));
    assert.equal(n.inbound.stats().sessions, 1);
    const ending = closure(s);

    // A CRL that revokes nothing in use ends nothing.
    assert.equal(n.inbound.closeRevoked(() => false) + n.pool.closeRevoked(() => false), 0);
    assert.equal(n.inbound.stats().sessions, 1);

    const revoked = (c: X509Certificate): boolean => uri(c) === revokedIdentity;
    const ended = side === 'inbound agent' ? n.inbound.closeRevoked(revoked) : n.pool.closeRevoked(revoked);
    assert.equal(ended, 1);
    assert.equal(total(parseMetrics(await n.registry.metrics()), 'weft_tunnel_handshake_failures_total', { reason: 'revoked' }), 1, 'counted once, by the side that ended it');
    assert.match(await ending, /^(ECONNRESET|end|close)$/, 'the stream on it ended');
    await until(() => n.inbound.stats().sessions === 0 && n.pool.stats().sessions === 0, 3000, 'both ends of the session to go');
    // A new connection opens a new session (the certificate would be refused there by the verifier; here it is not).
    const again = await n.dial();
    again.write('after');
    await new Promise<void>((resolve) => again.once('data', () => resolve()));
    again.destroy();
  });
}
