// The server's hand-assembled DeltaResponse is protobuf: the generated decoder (what every
// agent runs) reads it back field for field.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import { controlService, type DeltaResponse } from '../../../src/control/protocol.ts';
import { encodeDeltaResponse, encodeDeltaTail, encodeResource } from '../../../src/control/wire-encoding.ts';

const decode = (controlService.DeltaResources as grpc.MethodDefinition<unknown, DeltaResponse>).responseDeserialize;

test('an encoded DeltaResponse decodes to the same fields with the generated decoder', () => {
  const resources = [
    { type: 'service', name: 'shop/web', version: '0123456789abcdef', body: Buffer.from(JSON.stringify({ vip: '198.19.0.1', note: 'héllo ✓' })) },
    { type: 'workload', name: 'shop/ümlaut-pod', version: 'v', body: Buffer.from('x'.repeat(70_000)) },
    { type: 'mesh', name: 'config', version: '1', body: Buffer.alloc(0) },
  ];
  const cases = [
    { systemVersion: '42', nonce: 'abc-1', resources, removed: ['workload/shop/gone', 'node/n9'], more: true },
    { systemVersion: '', nonce: 'n', resources: [], removed: [], more: false },
  ];
  for (const c of cases) {
    const tail = encodeDeltaTail({ resources: c.resources.map(encodeResource), removed: c.removed, more: c.more });
    const decoded = decode(encodeDeltaResponse({ systemVersion: c.systemVersion, nonce: c.nonce, tail }));
    assert.equal(decoded.systemVersion, c.systemVersion);
    assert.equal(decoded.nonce, c.nonce);
    assert.deepEqual(decoded.removed, c.removed);
    assert.equal(decoded.more, c.more);
    assert.deepEqual(decoded.resources.map((r) => ({ ...r, body: Buffer.from(r.body) })), c.resources);
  }
});
