// The tunnel port (15008) against hostile peers on a 3-node simulated mesh: clients in the
// underlay with a certificate from another CA, a mesh certificate for an identity outside the
// trust domain or with no SPIFFE id, no certificate, no or an unknown server name, plain TCP;
// and impostor agents that answer for node-3 with the wrong identity or another CA. Every
// refusal is counted by reason in weft_tunnel_handshake_failures_total on :15020/metrics. A
// client with a genuine mesh certificate goes through, so the refusals are the credentials'.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName, weft, type SimStatus } from '../support/sim.ts';
import { agentMetrics, clientInNetns, makeCa, node, pod, runClient, signLeaf, type Json } from './mesh-support.ts';

const FAILURES = 'weft_tunnel_handshake_failures_total';
const HELLO = 'spiffe://cluster.local/ns/demo/sa/hello';
const ECHO = 'spiffe://cluster.local/ns/demo/sa/echo';

async function failureCounts(s: SimStatus, nodeName: string): Promise<Map<string, number>> {
  const text = await agentMetrics(s, nodeName);
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`^${FAILURES}\\{reason="([a-z_]+)"\\} (\\d+)`, 'gm'))) out.set(m[1] ?? '', Number(m[2]));
  return out;
}

/** Per-reason increase between two counts (reasons that did not move are left out). */
function increase(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [reason, n] of after) if (n !== (before.get(reason) ?? 0)) out[reason] = n - (before.get(reason) ?? 0);
  return out;
}

test('tunnel security: hostile clients and impostor agents are refused and counted by reason', { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'openssl'])) return;
  const name = uniqueName('ms');
  const s = await simCluster(t, name, ['--nodes', '3', '--pods-per-node', '3']);
  const dir = mkdtempSync(join(tmpdir(), 'weft-mesh-security-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const underlay = `weft-${name}-underlay`;
  const meshCa = { cert: `/run/weft/sim/${name}/mesh/ca/ca.crt`, key: `/run/weft/sim/${name}/mesh/ca/ca.key` };
  const meshCaPem = readFileSync(meshCa.cert, 'utf8');
  const rogueCa = makeCa(dir, 'rogue-ca');
  const certs = {
    hello: signLeaf(dir, 'hello', meshCa, [`URI:${HELLO}`]),
    echo: signLeaf(dir, 'echo', meshCa, [`URI:${ECHO}`]),
    rogueHello: signLeaf(dir, 'rogue-hello', rogueCa, [`URI:${HELLO}`]),
    rogueEcho: signLeaf(dir, 'rogue-echo', rogueCa, [`URI:${ECHO}`]),
    otherDomain: signLeaf(dir, 'other-domain', meshCa, ['URI:spiffe://evil.example/ns/demo/sa/hello']),
    dnsOnly: signLeaf(dir, 'dns-only', meshCa, ['DNS:echo.demo.svc.cluster.local']),
  };
  const node2 = node(s, 'node-2');
  const echo2 = pod(s, 'echo-2-0');
  const tunnel = (o: { cert?: { certPem: string; keyPem: string }; servername?: string; authority?: string }): Promise<Json> => runClient({ netns: underlay }, 'tunnel-client', {
    host: node2.ip, port: 15008, caPem: meshCaPem, authority: o.authority ?? `${echo2.ip}:8080`,
    ...('servername' in o ? (o.servername === undefined ? {} : { servername: o.servername }) : { servername: 'echo.demo.cluster.local.weft' }),
    ...(o.cert === undefined ? {} : { certPem: o.cert.certPem, keyPem: o.cert.keyPem }),
  }, 20_000);

  await t.test('a client with a genuine mesh certificate gets through (the control case)', async () => {
    const before = await failureCounts(s, 'node-2');
    const r = await tunnel({ cert: certs.hello });
    assert.equal(r.tls, 'ok', JSON.stringify(r));
    assert.equal(r.alpn, 'h2');
    assert.equal(r.serverSan, `URI:${ECHO}`, 'node-2 presents the identity asked for by server name');
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.match(String(r.body), /hello from echo-2-0 ns=demo node=node-2/);
    assert.deepEqual(increase(before, await failureCounts(s, 'node-2')), {});
  });

  const refusals: [string, () => Promise<Json>, string][] = [
    ['a certificate from another CA', () => tunnel({ cert: certs.rogueHello }), 'untrusted_peer'],
    ['a mesh-signed certificate for another trust domain', () => tunnel({ cert: certs.otherDomain }), 'identity_rejected'],
    ['a mesh-signed certificate without a SPIFFE id', () => tunnel({ cert: certs.dnsOnly }), 'identity_rejected'],
    ['no client certificate', () => tunnel({}), 'no_peer_certificate'],
    ['no server name', () => tunnel({ cert: certs.hello, servername: undefined }), 'unknown_server_name'],
    ['a server name for an identity node-2 does not hold', () => tunnel({ cert: certs.hello, servername: 'db.shop.cluster.local.weft' }), 'unknown_server_name'],
    ['plain TCP', () => runClient({ netns: underlay }, 'plain-client', { host: node2.ip, port: 15008, text: `CONNECT ${echo2.ip}:8080 HTTP/1.1\r\nHost: ${echo2.ip}:8080\r\n\r\n` }, 20_000), 'not_tls'],
  ];
  for (const [what, attempt, reason] of refusals) {
    await t.test(`${what} is refused and counted as ${reason}`, async () => {
      const before = await failureCounts(s, 'node-2');
      const r = await attempt();
      t.diagnostic(JSON.stringify(r));
      assert.notEqual(r.status, 200, 'no tunnel stream was opened');
      assert.doesNotMatch(JSON.stringify(r), /hello from/, 'no byte reached the pod');
      if (reason === 'not_tls') assert.match(String(r.ending), /^(end|error:ECONNRESET)$/, 'the connection is closed on it');
      assert.equal(r.timeout, undefined, 'refused promptly, not left hanging');
      assert.deepEqual(increase(before, await failureCounts(s, 'node-2')), { [reason]: 1 });
    });
  }

  await t.test('a genuine client that asks for one identity cannot reach a pod of another (421)', async () => {
    const before = await failureCounts(s, 'node-2');
    const r = await tunnel({ cert: certs.hello, servername: 'hello.demo.cluster.local.weft' });
    assert.equal(r.tls, 'ok');
    assert.equal(r.serverSan, `URI:${HELLO}`);
    assert.equal(r.status, 421, JSON.stringify(r));
    assert.deepEqual(increase(before, await failureCounts(s, 'node-2')), {});
  });

  await t.test('node-1 refuses impostors answering for node-3: wrong identity, another CA; a genuine certificate is accepted', { timeout: 120_000 }, async () => {
    const client = pod(s, 'hello-1-1');
    const echo3 = pod(s, 'echo-3-0');
    const node3 = node(s, 'node-3');
    const ok = await inPod(name, client.name, ['curl', '-sS', '-m', '5', `http://${echo3.ip}:8080/`]);
    assert.match(ok.stdout, /hello from echo-3-0/, `node-3 serves before the impostors: ${ok.stderr}`);
    const stop = await weft(['sim', 'mesh', '--name', name, 'stop', 'agent/node-3']);
    assert.equal(stop.status, 0, stop.stderr);

    const impostors: [string, { certPem: string; keyPem: string }, string | undefined][] = [
      ['wrong identity (hello for echo)', certs.hello, 'identity_rejected'],
      ['another CA', certs.rogueEcho, 'untrusted_peer'],
      ['genuine echo certificate', certs.echo, undefined],
    ];
    try {
      for (const [what, cert, reason] of impostors) {
        const fake = clientInNetns(node3.netns, 'fake-agent', { host: node3.ip, port: 15008, ...cert });
        try {
          await fake.waitFor((l) => l.event === 'listening', 10_000, `impostor (${what})`);
          const before = await failureCounts(s, 'node-1');
          // -f: through the HTTP layer the refusal is a 503 from node-1 rather than a reset.
          const r = await inPod(name, client.name, ['curl', '-sS', '-f', '-m', '8', `http://${echo3.ip}:8080/`]);
          assert.notEqual(r.status, 0, `${what}: the request cannot succeed against an impostor`);
          assert.doesNotMatch(r.stdout, /hello from/);
          const conn = await fake.waitFor((l) => l.event === 'connection' || l.event === 'tlsClientError', 10_000, `${what}: node-1 dialled the impostor`);
          assert.equal(conn.servername, 'echo.demo.cluster.local.weft', 'node-1 asks for the destination identity by name');
          if (conn.event === 'connection') assert.equal(conn.clientSan, `URI:${HELLO}`, 'node-1 presents the source workload identity');
          const moved = increase(before, await failureCounts(s, 'node-1'));
          t.diagnostic(`${what}: curl exit ${r.status} (${r.stderr.trim()}); counted ${JSON.stringify(moved)}; impostor got ${String(conn.appBytes)} bytes`);
          if (reason === undefined) {
            // Verified: node-1 sends the HTTP/2 preface and CONNECT (which the impostor cannot answer).
            assert.ok(Number(conn.appBytes) > 0, 'a verified peer gets the CONNECT');
            assert.deepEqual(moved, {});
          } else {
            assert.equal(conn.appBytes, 0, `${what}: not a byte of HTTP/2 before the peer is verified`);
            assert.deepEqual(Object.keys(moved), [reason]);
            assert.ok((moved[reason] ?? 0) >= 1);
          }
        } finally {
          fake.stop();
          await fake.exited;
        }
      }
    } finally {
      const start = await weft(['sim', 'mesh', '--name', name, 'start', 'agent/node-3']);
      assert.equal(start.status, 0, start.stderr);
    }
    const again = await inPod(name, client.name, ['curl', '-sS', '-m', '8', '--retry', '3', '--retry-all-errors', `http://${echo3.ip}:8080/`]);
    assert.match(again.stdout, /hello from echo-3-0/, `node-3's own agent serves again: ${again.stderr}`);
  });
});
