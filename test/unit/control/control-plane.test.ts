// The wired control plane (src/app/control.ts) end to end on 127.0.0.1: a manifests
// directory, the real mesh model, the identity CA on disk, bootstrap tokens as weft sim
// writes them, and an agent client validating with the model's decoder.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { decodeAgentResources, runControlPlane, validateAgentResource } from '../../../src/app/control.ts';
import { controlConfigFromArgv as controlConfig } from '../../../src/config/control.ts';
import { ControlClient } from '../../../src/control/client.ts';
import { CertificateStore, createWorkloadCsr, spiffeId, systemScheduler, type CertificateIssuer } from '../../../src/identity/index.ts';
import { systemClock } from '../../../src/core/clock.ts';
import { waitFor } from './harness.ts';

const docs = (extraPods: number) => [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'weft.dev/mesh': 'enabled' } } },
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'web', namespace: 'shop' } },
  ...['node-a', 'node-b'].flatMap((node, i) => Array.from({ length: 1 + extraPods }, (_, j) => ({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: `web-${i}-${j}`, namespace: 'shop', labels: { app: 'web' } },
    spec: { nodeName: node, serviceAccountName: 'web', containers: [{ name: 'app', image: 'x' }] },
    status: { podIP: `198.18.${i + 1}.${10 + j}` },
  }))),
  {
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' },
    spec: { clusterIP: '198.19.0.10', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  },
];

test('weft control wiring: manifests -> model -> per-node push with trust bundle; CA signs for pods on the node', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const manifests = join(dir, 'manifests');
  mkdirSync(manifests);
  writeFileSync(join(manifests, 'mesh.yaml'), docs(0).map((d) => stringify(d)).join('---\n'));
  const token = 'c2ltdWxhdGVkLXRva2VuLWZvci1ub2RlLWE';
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ [token]: 'node-a' }));

  const config = controlConfig([
    '--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--manifests', manifests, '--ca-dir', join(dir, 'ca'),
    '--tokens', join(dir, 'tokens.json'), '--ready-file', join(dir, 'ready', 'control'), '--dashboard', '127.0.0.1:0',
  ]);
  const plane = await runControlPlane(config, { logger: pino({ level: 'silent' }) });
  t.after(() => plane.close());
  assert.equal(readFileSync(join(dir, 'ready', 'control'), 'utf8').trim(), String(process.pid));

  let onConfigCalls = 0;
  const agent = new ControlClient({
    address: `127.0.0.1:${plane.port}`,
    node: 'node-a',
    trustDomain: 'cluster.local',
    trustBundlePem: () => readFile(join(dir, 'ca', 'ca.crt'), 'utf8'), // what the sim would pass as --ca-file
    bootstrapToken: () => `${token}\n`,
    validate: validateAgentResource,
    onConfig: () => { onConfigCalls++; },
  });
  t.after(() => agent.close());
  agent.start();
  await agent.whenSynced();

  const held = agent.config().resources;
  assert.deepEqual([...held.keys()].filter((k) => !k.startsWith('workload/') && !k.startsWith('endpoint/')).sort(), ['identity/shop/web', 'mesh/config', 'service/shop/web', 'trust/bundle']);
  assert.deepEqual([...held.keys()].filter((k) => k.startsWith('endpoint/')).sort(), ['endpoint/shop/web/80/198.18.1.10', 'endpoint/shop/web/80/198.18.2.10']);
  const { decoded, trust } = decodeAgentResources(held, 'cluster.local');
  assert.deepEqual(decoded.problems, []);
  assert.equal(decoded.node, 'node-a');
  assert.deepEqual(decoded.content.workloads.map((w) => w.key), ['shop/web-0-0', 'shop/web-1-0']);
  assert.equal(trust?.trustBundlePem, plane.trustBundlePem);
  assert.match(trust?.crlPem ?? '', /BEGIN X509 CRL/);
  assert.deepEqual(agent.configDump().rejected, []);

  // A manifest change reaches the agent as a delta.
  writeFileSync(join(manifests, 'mesh.yaml'), docs(1).map((d) => stringify(d)).join('---\n'));
  await waitFor(() => agent.config().resources.has('workload/shop/web-0-1'), 'the new pod to arrive', 10_000);
  assert.equal(agent.config().resources.get('trust/bundle'), held.get('trust/bundle'), 'unchanged resources are not resent');
  assert.ok(onConfigCalls >= 2);

  // The identity CA signs for a service account with a pod on this node, and refuses others.
  const web = spiffeId('shop', 'web');
  const { csrPem } = await createWorkloadCsr(web);
  const issued = await agent.sign(csrPem, web);
  assert.equal(new X509Certificate(issued.certPem).subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/web');
  assert.ok(new X509Certificate(issued.certPem).verify(new X509Certificate(plane.trustBundlePem).publicKey));
  const other = spiffeId('shop', 'db');
  await assert.rejects(agent.sign((await createWorkloadCsr(other)).csrPem, other), { code: 'WEFT_IDENTITY_NOT_ON_NODE', message: /node node-a asked for spiffe:\/\/cluster.local\/ns\/shop\/sa\/db/ });

  // The client is the identity module's CertificateIssuer: the agent's store renews through it.
  const issuer: CertificateIssuer = agent;
  const store = new CertificateStore({ issuer, clock: systemClock, scheduler: systemScheduler });
  t.after(() => store.close());
  store.setIdentities([web]);
  const fromStore = await store.waitFor(web);
  assert.equal(fromStore.identity.uri, web.uri);

  // Metrics and readiness on their own port.
  const metrics = await fetch(`http://127.0.0.1:${plane.metricsPort}/metrics`).then((r) => r.text());
  assert.match(metrics, /weft_control_connected_agents 1/);
  assert.match(metrics, /weft_control_certificates_total\{kind="workload",result="issued"\} 2/);
  assert.match(metrics, /weft_control_certificates_total\{kind="node",result="issued"\} 1/);
  assert.equal((await fetch(`http://127.0.0.1:${plane.metricsPort}/healthz/ready`)).status, 200);

  const closing = performance.now();
  await plane.close();
  await plane.close();
  t.diagnostic(`close took ${(performance.now() - closing).toFixed(0)} ms`);
  await waitFor(() => !agent.connected, 'the agent to see the control plane leave');
  assert.equal(agent.config().resources.has('workload/shop/web-0-1'), true, 'config kept after the control plane left');
});

test('weft control flags: every refusal names the flag and the value', () => {
  const base = ['--manifests', '/m', '--ca-dir', '/ca', '--tokens', '/t'];
  const cfg = controlConfig(base);
  assert.equal(cfg.listen, '0.0.0.0:15010');
  assert.deepEqual(cfg.metrics, { host: '0.0.0.0', port: 15014 });
  assert.deepEqual(cfg.dashboard, { host: '127.0.0.1', port: 15080 }, 'the dashboard is loopback-only by default');
  assert.equal(controlConfig([...base, '--dashboard', 'off']).dashboard, undefined);
  assert.equal(cfg.workloadCertTtlMs, 24 * 3600 * 1000, 'workload certificates live 24 h by default');
  assert.equal(controlConfig([...base, '--workload-cert-ttl', '60']).workloadCertTtlMs, 60_000);
  assert.deepEqual(controlConfig([...base, '--dashboard', '0.0.0.0:9090']).dashboard, { host: '0.0.0.0', port: 9090 });
  assert.equal(cfg.trustDomain, 'cluster.local');
  assert.ok(Object.isFrozen(cfg));
  assert.deepEqual(cfg.source, { kind: 'manifests', dir: '/m', quietMs: 200, removalGraceMs: 10_000 });
  assert.deepEqual(controlConfig([...base, '--manifest-quiet-ms', '0', '--removal-grace-ms', '60000']).source, { kind: 'manifests', dir: '/m', quietMs: 0, removalGraceMs: 60_000 });
  const usage: Array<[string[], RegExp]> = [
    [['--ca-dir', '/ca', '--tokens', '/t'], /exactly one of --manifests DIR or --kubernetes/],
    [[...base, '--kubernetes'], /exactly one of --manifests DIR or --kubernetes/],
    [['--manifests', '/m', '--tokens', '/t'], /exactly one of --ca-dir DIR or --ca-secret/],
    [['--kubernetes', '--ca-dir', '/ca', '--ca-secret', 'weft-ca'], /exactly one of --ca-dir DIR or --ca-secret/],
    [[...base, '--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [argv, message] of usage) assert.throws(() => controlConfig(argv), { code: 'WEFT_CLI_USAGE', message }, argv.join(' '));
  const invalid: Array<[string[], RegExp]> = [
    [['--manifests', '/m', '--ca-dir', '/ca'], /^--tokens \(not given\): is required with --manifests/],
    [[...base, '--listen', '15010'], /^--listen "15010": must be HOST:PORT/],
    [[...base, '--listen', 'h:99999'], /^--listen "h:99999": must be HOST:PORT/],
    [[...base, '--metrics', 'x:y'], /^--metrics "x:y": must be PORT or HOST:PORT/],
    [[...base, '--dashboard', 'everywhere'], /^--dashboard "everywhere": must be PORT or HOST:PORT/],
    [[...base, '--prometheus', 'ftp://p'], /^--prometheus "ftp:\/\/p": must be an http\(s\) URL/],
    [[...base, '--dashboard', 'off', '--prometheus', 'http://p:9090'], /^--prometheus "http:\/\/p:9090": is for the dashboard/],
    [[...base, '--trust-domain', 'Bad TD'], /^--trust-domain "Bad TD": must be lowercase/],
    [[...base, '--kubeconfig', '/k'], /^--kubeconfig "\/k": only goes with --kubernetes/],
    [[...base, '--log-level', 'loud'], /^--log-level "loud": must be one of fatal, error/],
    [[...base, '--removal-grace-ms', '5e3'], /^--removal-grace-ms "5e3": must be a whole number from 0 to 3600000/],
    [[...base, '--manifest-quiet-ms', '1s'], /^--manifest-quiet-ms "1s": must be a whole number from 0 to 60000/],
    [[...base, '--workload-cert-ttl', '59'], /^--workload-cert-ttl "59": must be a whole number from 60 to 7776000/],
    [[...base, '--workload-cert-ttl', '1h'], /^--workload-cert-ttl "1h": must be a whole number/],
    [['--kubernetes', '--ca-dir', '/ca', '--removal-grace-ms', '5'], /^--removal-grace-ms "5": only goes with --manifests/],
    [['--manifests', '/m', '--ca-secret', 'weft-ca', '--tokens', '/t'], /^--ca-secret "weft-ca": a Secret lives in the Kubernetes API/],
    [['--kubernetes', '--ca-secret', 'a/b/c'], /^--ca-secret "a\/b\/c": must be NAME or NAMESPACE\/NAME/],
    [['--kubernetes', '--ca-secret', 'Bad_Name'], /^--ca-secret "Bad_Name": must be NAME or NAMESPACE\/NAME/],
    [['--kubernetes', '--ca-dir', '/ca', '--tokens', '/t', '--token-audience', 'x'], /^--token-audience "x": goes with TokenReview/],
    [['--kubernetes', '--ca-dir', '/ca', '--token-audience', 'a b'], /^--token-audience "a b": must be a token audience/],
    [[...base, '--trust-bundle-configmap', 'weft-ca-root-cert'], /^--trust-bundle-configmap "weft-ca-root-cert": a ConfigMap lives in the Kubernetes API/],
    [['--kubernetes', '--ca-dir', '/ca', '--trust-bundle-configmap', 'Root_Cert'], /^--trust-bundle-configmap "Root_Cert": must be a ConfigMap name/],
  ];
  for (const [argv, message] of invalid) assert.throws(() => controlConfig(argv), { code: 'WEFT_CONFIG_INVALID', message }, argv.join(' '));
  const k8s = controlConfig(['--kubernetes', '--ca-dir', '/ca']);
  assert.deepEqual(k8s.source, { kind: 'kubernetes', kubeconfig: undefined });
  assert.equal(k8s.tokenAudience, 'weft-control');
  // The Deployment's namespace (downward API) is the Secret's unless the flag names one.
  assert.deepEqual(controlConfig(['--kubernetes', '--ca-secret', 'weft-ca'], { POD_NAMESPACE: 'mesh' }).caSecret, { namespace: 'mesh', name: 'weft-ca' });
  assert.deepEqual(controlConfig(['--kubernetes', '--ca-secret', 'weft-ca'], {}).caSecret, { namespace: 'weft-system', name: 'weft-ca' });
  assert.deepEqual(controlConfig(['--kubernetes', '--ca-secret', 'other/weft-ca'], { POD_NAMESPACE: 'mesh' }).caSecret, { namespace: 'other', name: 'weft-ca' });
  const full = controlConfig(['--kubernetes', '--ca-secret', 'weft-ca', '--token-audience', 'weft', '--trust-bundle-configmap', 'weft-ca-root-cert', '--server-dns', 'a.svc, b.svc']);
  assert.equal(full.tokenAudience, 'weft');
  assert.equal(full.trustBundleConfigMap, 'weft-ca-root-cert');
  assert.deepEqual(full.serverDnsNames, ['a.svc', 'b.svc']);
});

