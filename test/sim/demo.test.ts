// `npm start` runs `weft demo`: a 2-node mesh with a client calling services by VIP. The
// demo must work from its very first request and leave nothing behind.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { needsRoot } from '../support/root.ts';
import { uniqueName, weft } from '../support/sim.ts';

test('the demo: every request through the mesh answers, and teardown is complete', async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter'])) return;
  const name = uniqueName('d');
  t.after(async () => { await weft(['sim', 'down', '--name', name]); });
  const r = await weft(['demo', '--name', name, '--duration', '6']);
  assert.equal(r.status, 0, r.stderr);
  const calls = r.stdout.split('\n').filter((l) => / -> http:\/\/198\.19\./.test(l));
  assert.ok(calls.length >= 3, `the client made calls:\n${r.stdout}`);
  for (const call of calls) assert.match(call, /hello from (echo|hello)-\d-\d ns=demo node=node-\d client=198\.18\.\d\.1:/, 'answered through the agent');
  assert.match(r.stdout, /-- mesh: node-1: [1-9]\d* HTTP requests, \d+ outbound connections \(\d+ over mutual TLS\)/);
  // The canary HTTPRoute splits demo/hello 80/20 (50 calls: all answered, some by echo, most by hello).
  const canary = /route demo\/hello-canary \(HTTPRoute, 80\/20\): of 50 calls .* (\d+) reached hello, (\d+) echo/.exec(r.stdout) ?? assert.fail(`no canary line:\n${r.stdout}`);
  const [hello, echo] = [Number(canary[1]), Number(canary[2])];
  assert.equal(hello + echo, 50);
  assert.ok(echo >= 1 && echo <= 25, `echo answered ${echo} of 50`);
  assert.match(r.stdout, /metrics: +nsenter --net=\/run\/netns\/weft-\w+-n-node-1 curl -s http:\/\/198\.18\.1\.1:15020\/metrics/);
  assert.doesNotMatch(execFileSync('ip', ['netns', 'list']).toString(), new RegExp(`weft-${name}-`));
});

test('the demo prints the dashboard URL, serves it while it runs, and relays request and connection traces to a collector on loopback', { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter'])) return;
  const { startOtlpReceiver } = await import('../support/otlp-receiver.ts');
  const { spawn } = await import('node:child_process');
  const { createInterface } = await import('node:readline');
  const { WEFT } = await import('../support/sim.ts');
  const receiver = await startOtlpReceiver('127.0.0.1', 0);
  t.after(() => receiver.close());
  const name = uniqueName('d');
  t.after(async () => { await weft(['sim', 'down', '--name', name]); });
  const demo = spawn(WEFT, ['demo', '--name', name, '--duration', '20'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`, OTEL_BSP_SCHEDULE_DELAY: '500' },
  });
  const lines: string[] = [];
  const exited = new Promise<number>((resolve) => demo.once('close', (code) => resolve(code ?? -1)));
  // The banner arrives in several writes; wait for its last line (the client's) so a pipe
  // chunk boundary between the dashboard and traces lines cannot fail the test.
  const dashboard = await new Promise<string>((resolve, reject) => {
    let url: string | undefined;
    createInterface({ input: demo.stdout }).on('line', (line) => {
      lines.push(line);
      const m = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(line);
      if (m !== null) url = m[1];
      if (url !== undefined && /^ {2}client /.test(line)) resolve(url);
    });
    void exited.then(() => reject(new Error(`the demo ended without a dashboard line:\n${lines.join('\n')}`)));
  });
  assert.ok(lines.some((l) => /traces: +every HTTP request is traced \(a CLIENT span on the source agent, a SERVER span on the destination agent/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /^ +http:\/\/127\.0\.0\.1:\d+ \(service weft-agent\)$/.test(l)), lines.join('\n'));
  // The dashboard answers on the printed URL while the demo runs, with the demo's traffic on it.
  let edges = 0;
  for (let i = 0; i < 30 && edges === 0; i++) {
    const m = await (await fetch(`${dashboard}api/mesh`)).json() as { topology: { edges: { from: string; security: string }[] } };
    edges = m.topology.edges.filter((e) => e.from === 'workload:demo/echo-1-0').length;
    if (edges === 0) await new Promise((r) => setTimeout(r, 1000));
  }
  assert.ok(edges > 0, 'the dashboard shows the demo client\'s edges');
  assert.equal(await exited, 0, lines.join('\n'));
  assert.match(lines.join('\n'), /-- mesh: node-1: .*spans exported/);
  // Traces reached the collector on the host's loopback: spans from both agents.
  await receiver.waitFor((s) => s.some((x) => x.attributes['weft.node'] === 'node-1') && s.some((x) => x.attributes['weft.node'] === 'node-2'), 10_000, 'spans from both agents');
  assert.ok(receiver.spans.every((s) => s.resource['service.name'] === 'weft-agent'));
  assert.match(lines.join('\n'), /-- mesh: node-1: [1-9]\d* HTTP requests/);
  // The client's requests across nodes: a CLIENT span on node-1 and, in its trace, its child SERVER span on node-2.
  await receiver.waitFor((s) => s.some((c) => c.kind === 3 && c.attributes['weft.node'] === 'node-1' && c.attributes['http.request.method'] === 'GET'
    && s.some((x) => x.kind === 2 && x.attributes['weft.node'] === 'node-2' && x.traceId === c.traceId && x.parentSpanId === c.spanId)), 10_000, 'a request traced across both agents');
  // Nothing is left: the forward's port is closed and the cluster is gone.
  await assert.rejects(fetch(`${dashboard}api/mesh`));
  assert.doesNotMatch(execFileSync('ip', ['netns', 'list']).toString(), new RegExp(`weft-${name}-`));
});
