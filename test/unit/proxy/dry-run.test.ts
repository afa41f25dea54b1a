// Dry-run (issue 9, point 5): a policy annotated weft.dev/dry-run: "true" decides but never
// enforces. Through two loopback agents, with the real policy engine over a real dry-run
// DENY policy (and a dry-run ALLOW that matches nothing): traffic flows, every would-be
// denial is counted in weft_policy_dry_run_denials_total{policy,namespace} and logged.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';

import { authorize, type AuthorizationRequest } from '../../../src/model/authorize.ts';
import { systemClock } from '../../../src/core/clock.ts';
import { DryRunReporter, reportingDryRun } from '../../../src/telemetry/dry-run.ts';
import { policy, state } from '../model/fixture.ts';
import { exchange, until } from './harness.ts';
import { parseMetrics, total } from './metrics-text.ts';
import { twoNodes } from './two-nodes.ts';

const DRY = { 'weft.dev/dry-run': 'true' };

for (const [kind, spec] of [
  ['DENY', { action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }] }] }],
  ['ALLOW', { action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/nobody'] } }] }] }],
] as const) {
  test(`a dry-run ${kind} policy that would deny: traffic flows, the dry-run counter counts and the log says which policy`, async (t) => {
    const view = state([policy('shop', `try-${kind.toLowerCase()}`, spec, DRY)]);
    const registry = new Registry();
    const logLines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l !== '') logLines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    }));
    const reporter = new DryRunReporter({ registry, logger, clock: systemClock });
    const n = await twoNodes(t, { inboundAuthorize: reportingDryRun((r: AuthorizationRequest) => authorize(view, r), reporter) });
    for (let i = 0; i < 3; i++) {
      const s = await n.dial();
      const back = await exchange(s, Buffer.from(`ping ${i}`));
      assert.equal(back.toString(), `ping ${i}`, 'not enforced: the connection works');
    }
    const counted = total(parseMetrics(await registry.metrics()), 'weft_policy_dry_run_denials_total', { policy: `try-${kind.toLowerCase()}`, namespace: 'shop' });
    assert.equal(counted, 3);
    assert.equal(logLines.filter((l) => l.msg === 'dry-run policy would deny this (not enforced)').length, 3, 'logged (bounded rate: 10/s)');
    const line = logLines.find((l) => l.msg === 'dry-run policy would deny this (not enforced)');
    assert.equal(line?.policy, `shop/try-${kind.toLowerCase()}`);
    assert.equal(line?.dst, 'shop/echo');
    await until(() => n.logLines.filter((l) => l.msg === 'connection').length === 6, 3000, 'both agents\' records');
    assert.deepEqual([...new Set(n.logLines.filter((l) => l.msg === 'connection').map((l) => l.flags))], ['-'], 'no DENY anywhere');
  });
}
