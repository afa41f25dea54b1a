// `weft agent --max-fds-per-source N` end to end: an agent started with its own per-source cap
// (400 descriptors, 2 per outbound connection, split over its 2 workers) holds 200 of a pod's
// idle outbound connections and resets the rest, counts the refusals, and shows the cap on
// /metrics; a pod on the same node keeps calling meanwhile. The client is Python's socket
// module (hold-many.py), inside the pod.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName } from '../support/sim.ts';
import { agentMetrics, pod, sample } from './mesh-support.ts';

const HOLD_MANY = join(import.meta.dirname, 'hold-many.py');
const CAP = 400;
const OPENED = 600;

test('--max-fds-per-source 400: a pod holds 200 outbound connections, the rest are reset and counted, the cap shows', { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['python3', 'curl'])) return;
  const name = uniqueName('fdcap');
  const s = await simCluster(t, name, ['--nodes', '2', '--pods-per-node', '2', '--agent-args', `--max-fds-per-source ${CAP} --workers 2`]);
  const target = `${pod(s, 'echo-2-0').ip}`;
  const r = await inPod(name, 'hello-1-1', ['python3', HOLD_MANY, target, '8080', String(OPENED), '3'], 120_000);
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, number>;
  const metrics = await agentMetrics(s, 'node-1');
  t.diagnostic(`${JSON.stringify(got)}; refused ${sample(metrics, 'weft_proxy_connections_refused_total', { listener: 'outbound', cap: 'source' })}`);
  assert.equal(got.opened, OPENED, 'every connection was accepted (the agent resets the ones past the cap)');
  // Each worker holds ceil(400 / 2) descriptors of this pod: 100 connections each.
  assert.equal(got.held, CAP / 2, `the pod holds ${CAP / 2}: ${JSON.stringify(got)}`);
  assert.equal(got.reset, OPENED - CAP / 2, `the rest are reset: ${JSON.stringify(got)}`);
  assert.equal(sample(metrics, 'weft_proxy_connection_fd_cap', { scope: 'source' }), CAP);
  assert.equal(sample(metrics, 'weft_proxy_connections_refused_total', { listener: 'outbound', cap: 'source' }), OPENED - CAP / 2);
  // Another pod of the node is not held to that pod's cap.
  const other = await inPod(name, 'echo-1-0', ['curl', '-sf', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${target}:8080/`], 30_000);
  assert.equal(other.stdout, '200', other.stderr);
});
