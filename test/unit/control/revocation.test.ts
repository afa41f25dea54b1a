// Revocation an operator can use (issue 9, point 6), on the wired control plane over
// 127.0.0.1 with real agent clients: `weft control revoke` through the authenticated admin
// endpoint puts the certificates on the CRL and pushes it at once; a revoked node gets no
// certificate (not even with its bootstrap token) and no config, and that survives a restart
// of the control plane; other nodes go on. Refusals (no token, wrong token, bad requests)
// are tried too. The tunnel side (sessions closed) is in test/sim/revocation.test.ts.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { decodeAgentResources, runControlPlane, validateAgentResource } from '../../../src/app/control.ts';
import { revokeCommand } from '../../../src/cli/revoke.ts';
import { controlConfigFromArgv } from '../../../src/config/control.ts';
import { ControlClient } from '../../../src/control/client.ts';
import { parseRevocationRequest } from '../../../src/control/revocations.ts';
import { createWorkloadCsr, RevocationList, spiffeId, TrustBundle } from '../../../src/identity/index.ts';
import { waitFor } from './harness.ts';

const NODES = ['node-a', 'node-b'];
const docs = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } } },
  ...NODES.map((node, i) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: `web-${i}`, namespace: 'shop' },
    spec: { nodeName: node, serviceAccountName: i === 0 ? 'web' : 'db', containers: [{ name: 'app', image: 'x' }] },
    status: { podIP: `198.18.${i + 1}.10` },
  })),
];
const token = (node: string): string => Buffer.from(`bootstrap-token-of-${node}`).toString('base64url');

async function plane(t: TestContext, dir: string) {
  const config = controlConfigFromArgv([
    '--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--dashboard', 'off', '--admin', '127.0.0.1:0',
    '--manifests', join(dir, 'manifests'), '--ca-dir', join(dir, 'ca'), '--tokens', join(dir, 'tokens.json'),
  ]);
  const p = await runControlPlane(config, { logger: pino({ level: 'silent' }) });
  t.after(() => p.close());
  return p;
}

function agent(t: TestContext, dir: string, node: string, port: number): ControlClient {
  const c = new ControlClient({
    address: `127.0.0.1:${port}`, node, trustDomain: 'cluster.local',
    trustBundlePem: () => readFile(join(dir, 'ca', 'ca.crt'), 'utf8'), bootstrapToken: () => token(node), validate: validateAgentResource,
    backoff: { initialMs: 50, maxMs: 200 },
  });
  t.after(() => c.close());
  c.start();
  return c;
}

function crlOf(c: ControlClient, trustBundlePem: string): RevocationList {
  const { trust } = decodeAgentResources(c.config().resources, 'cluster.local');
  return RevocationList.parse(trust?.crlPem ?? assert.fail('no CRL pushed'), TrustBundle.parse(trustBundlePem));
}

test('weft control revoke --node: on the CRL at once, the node refused from then on (also after a restart); others go on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-revoke-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'manifests'));
  writeFileSync(join(dir, 'manifests', 'mesh.yaml'), docs.map((d) => stringify(d)).join('---\n'));
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify(Object.fromEntries(NODES.map((n) => [token(n), n]))));
  let p = await plane(t, dir);
  assert.ok(p.adminPort !== undefined);
  const tokenFile = join(dir, 'ca', 'admin.token');
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600, 'the admin token is made, readable by its owner only');
  const a = agent(t, dir, 'node-a', p.port);
  const b = agent(t, dir, 'node-b', p.port);
  await Promise.all([a.whenSynced(), b.whenSynced()]);
  const web = spiffeId('shop', 'web');
  const db = spiffeId('shop', 'db');
  const certA = new X509Certificate((await a.sign((await createWorkloadCsr(web)).csrPem, web)).certPem);
  const certB = new X509Certificate((await b.sign((await createWorkloadCsr(db)).csrPem, db)).certPem);

  // The refusals first.
  const admin = `http://127.0.0.1:${p.adminPort}`;
  const post = (body: string, auth?: string) => fetch(`${admin}/revoke`, {
    method: 'POST', body, headers: auth === undefined ? {} : { authorization: auth },
  });
  const noToken = await post('{"node":"node-a"}');
  assert.equal(noToken.status, 401);
  assert.equal((await noToken.json() as { code: string }).code, 'WEFT_CONTROL_ADMIN_UNAUTHENTICATED');
  assert.equal((await post('{"node":"node-a"}', 'Bearer not-the-token')).status, 401);
  const good = `Bearer ${readFileSync(tokenFile, 'utf8').trim()}`;
  for (const [body, message] of [
    ['not json', /not JSON/], ['{}', /exactly one of serial, node, identity \(got none\)/], ['{"node":"a","serial":"01"}', /exactly one/],
    ['{"serial":"xyz"}', /not a hexadecimal certificate serial/], ['{"identity":"web"}', /not a SPIFFE id/], ['{"node":"Node_A"}', /not a node name/],
    ['{"nodes":["a"]}', /unknown field\(s\) nodes/],
  ] as const) {
    const r = await post(body, good);
    assert.equal(r.status, 400, body);
    const j = await r.json() as { code: string; message: string };
    assert.equal(j.code, 'WEFT_CONTROL_BAD_REVOCATION', body);
    assert.match(j.message, message, body);
  }
  assert.deepEqual(crlOf(b, p.trustBundlePem).size, 0, 'nothing revoked by refused requests');

  // The CLI, as an operator runs it.
  let printed = '';
  assert.equal(await revokeCommand(['--node', 'node-a', '--admin', `127.0.0.1:${p.adminPort}`, '--ca-dir', join(dir, 'ca')], { write: (s) => { printed += s; } }), 0);
  assert.match(printed, /^revoked node node-a: 2 certificate\(s\) on the CRL \(.*\); node node-a refused from now on \(1 config stream\(s\) ended\)\n$/);
  assert.ok(printed.includes(certA.serialNumber.toLowerCase().replace(/^0+/, '')), 'the workload certificate issued to node-a');

  await waitFor(() => crlOf(b, p.trustBundlePem).revokes(certA), 'node-b to get the CRL with node-a\'s certificate', 5_000);
  assert.equal(crlOf(b, p.trustBundlePem).revokes(certB), false, 'node-b\'s own certificate is not revoked');
  await waitFor(() => !a.connected, 'node-a\'s config stream to end', 5_000);
  await assert.rejects(a.sign((await createWorkloadCsr(web)).csrPem, web), (err: Error & { code?: string }) => {
    assert.ok(err.code === 'WEFT_CONTROL_REVOKED' || err.code === 'WEFT_CONTROL_SIGN_FAILED', `${err.code ?? ''}: ${err.message}`);
    return true;
  });
  await waitFor(() => /revoked by an operator/.test(a.configDump().lastError ?? ''), 'node-a to be refused when it reconnects (token and certificate)', 5_000);
  assert.equal(a.connected, false);
  // node-b goes on.
  await b.sign((await createWorkloadCsr(db)).csrPem, db);
  assert.equal(b.connected, true);

  // A restarted control plane remembers: node-a's token gets it nothing.
  await p.close();
  p = await plane(t, dir);
  const again = agent(t, dir, 'node-a', p.port);
  await waitFor(() => /node node-a was revoked by an operator/.test(again.configDump().lastError ?? ''), 'the restarted control plane to refuse node-a', 10_000);
  const b2 = agent(t, dir, 'node-b', p.port);
  await b2.whenSynced();
  assert.ok(crlOf(b2, p.trustBundlePem).revokes(certA), 'the CRL still lists node-a\'s certificate');

  // By identity, and the listing.
  printed = '';
  await revokeCommand(['--identity', db.uri, '--admin', `127.0.0.1:${p.adminPort}`, '--token-file', tokenFile], { write: (s) => { printed += s; } });
  assert.match(printed, /^revoked identity spiffe:\/\/cluster.local\/ns\/shop\/sa\/db: 2 certificate\(s\)/);
  await waitFor(() => crlOf(b2, p.trustBundlePem).revokes(certB), 'the CRL with the db certificate', 5_000);
  const listing = await (await fetch(`http://127.0.0.1:${p.adminPort}/revocations`, { headers: { authorization: good } })).json() as { nodes: string[]; serials: { identity?: string }[] };
  assert.deepEqual(listing.nodes, ['node-a']);
  assert.ok(listing.serials.some((s) => s.identity === db.uri));
});

test('revocation requests: exactly one of serial, node, identity; a serial in any spelling', () => {
  assert.deepEqual(parseRevocationRequest({ serial: '0A:1B:FF' }), { serial: 'a1bff' });
  assert.deepEqual(parseRevocationRequest({ node: 'node-1' }), { node: 'node-1' });
  assert.deepEqual(parseRevocationRequest({ identity: 'spiffe://cluster.local/ns/a/sa/b' }), { identity: 'spiffe://cluster.local/ns/a/sa/b' });
  assert.throws(() => parseRevocationRequest([]), { code: 'WEFT_CONTROL_BAD_REVOCATION' });
  assert.throws(() => parseRevocationRequest({ serial: '' }), { code: 'WEFT_CONTROL_BAD_REVOCATION', message: /serial must be a non-empty string/ });
});

test('weft control revoke flags: exactly one target, and where the admin token is', async () => {
  await assert.rejects(revokeCommand(['--ca-dir', '/x']), { code: 'WEFT_CLI_USAGE', message: /exactly one of --serial, --node, --identity \(got none\)/ });
  await assert.rejects(revokeCommand(['--node', 'a', '--serial', '01', '--ca-dir', '/x']), { code: 'WEFT_CLI_USAGE', message: /got --serial, --node/ });
  await assert.rejects(revokeCommand(['--node', 'a']), { code: 'WEFT_CLI_USAGE', message: /give --token-file FILE or --ca-dir DIR/ });
  await assert.rejects(revokeCommand(['--node', 'a', '--token-file', '/nonexistent/token']), { code: 'WEFT_CONTROL_ADMIN_UNAUTHENTICATED', message: /cannot read the admin token \/nonexistent\/token/ });
});
