import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { defaultKubeAccess, inClusterAccess, kubeconfigAccess } from '../../../../src/control/source/kube-access.ts';
import { kubeJson, ApiStatusError } from '../../../../src/control/source/kube-http.ts';
import { SourceErrors } from '../../../../src/control/source/errors.ts';
import { isWeftError } from '../../../../src/core/errors.ts';
import { KubeApiServer } from '../../../../src/sim/kube-api/server.ts';
import { WATCHED_KINDS } from '../../../../src/control/source/kubernetes.ts';

const kubeconfig = (server: string, user: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
  clusters: [{ name: 'k', cluster: { server, ...extra } }], users: [{ name: 'u', user }], contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
});

test('a kubeconfig with a token, or a token file (relative to it, read again per request), reaches the API; a wrong token is a 401', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-kube-access-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const api = new KubeApiServer(WATCHED_KINDS);
  t.after(() => api.close());
  api.upsert('/api/v1/namespaces', { metadata: { name: 'shop' } });
  const url = await api.listen();

  writeFileSync(join(dir, 'token.yaml'), stringify(kubeconfig(`${url}/`, { token: api.token })));
  const byToken = await kubeconfigAccess(join(dir, 'token.yaml'));
  assert.equal(byToken.server, url);
  const list = await kubeJson(byToken, { path: '/api/v1/namespaces' }) as { items: { metadata: { name: string } }[] };
  assert.deepEqual(list.items.map((i) => i.metadata.name), ['shop']);

  writeFileSync(join(dir, 'tok'), 'wrong\n');
  writeFileSync(join(dir, 'file.yaml'), stringify(kubeconfig(url, { tokenFile: 'tok' })));
  const byFile = await kubeconfigAccess(join(dir, 'file.yaml'));
  await assert.rejects(kubeJson(byFile, { path: '/api/v1/namespaces' }), (err: unknown) => err instanceof ApiStatusError && err.statusCode === 401);
  writeFileSync(join(dir, 'tok'), `${api.token}\n`);
  assert.ok(await kubeJson(byFile, { path: '/api/v1/namespaces' }));

  // $KUBECONFIG is found as kubectl finds it.
  assert.equal((await defaultKubeAccess({ KUBECONFIG: join(dir, 'token.yaml') })).server, url);
});

test('client certificates and CAs are read inline (-data) or from files; TLS verification is on unless skipped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-kube-access-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ca.pem'), 'CA PEM');
  writeFileSync(join(dir, 'a.yaml'), stringify(kubeconfig('https://198.18.0.1:6443', {
    'client-certificate-data': Buffer.from('CERT PEM').toString('base64'), 'client-key': join(dir, 'ca.pem'),
  }, { 'certificate-authority': 'ca.pem' })));
  const access = await kubeconfigAccess(join(dir, 'a.yaml'));
  const opts = await access.requestOptions();
  const agent = opts.agent as unknown as { options: { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean } };
  assert.equal(agent.options.ca, 'CA PEM');
  assert.equal(agent.options.cert, 'CERT PEM');
  assert.equal(agent.options.key, 'CA PEM');
  assert.equal(agent.options.rejectUnauthorized, true);
  assert.deepEqual(opts.headers, {}, 'no token: no authorization header');
});

test('a kubeconfig that names what it lacks, or is not one, is a clear error; in-cluster needs the service account', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-kube-access-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const doc = kubeconfig('http://127.0.0.1:1', { token: 'x' });
  writeFileSync(join(dir, 'bad-user.yaml'), stringify({ ...doc, users: [] }));
  await assert.rejects(kubeconfigAccess(join(dir, 'bad-user.yaml')), (err: unknown) => isWeftError(err, SourceErrors.BAD_KUBECONFIG) && /no user named "u"/.test(err.message));
  writeFileSync(join(dir, 'no-context.yaml'), stringify({ ...doc, 'current-context': undefined }));
  await assert.rejects(kubeconfigAccess(join(dir, 'no-context.yaml')), (err: unknown) => isWeftError(err, SourceErrors.NO_CLUSTER));
  writeFileSync(join(dir, 'list.yaml'), '- 1\n- 2\n');
  await assert.rejects(kubeconfigAccess(join(dir, 'list.yaml')), (err: unknown) => isWeftError(err, SourceErrors.BAD_KUBECONFIG));
  await assert.rejects(kubeconfigAccess(join(dir, 'absent.yaml')), (err: unknown) => isWeftError(err, SourceErrors.BAD_KUBECONFIG));
  assert.throws(() => inClusterAccess(dir, {}), (err: unknown) => isWeftError(err, SourceErrors.NO_CLUSTER) && /KUBERNETES_SERVICE_HOST/.test(err.message));
  assert.throws(() => inClusterAccess(dir, { KUBERNETES_SERVICE_HOST: '10.0.0.1' }), (err: unknown) => isWeftError(err, SourceErrors.NO_CLUSTER) && /token/.test(err.message));
  writeFileSync(join(dir, 'token'), 't0\n');
  writeFileSync(join(dir, 'ca.crt'), 'CA');
  const inCluster = inClusterAccess(dir, { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' });
  assert.equal(inCluster.server, 'https://[fd00::1]:6443');
  assert.deepEqual((await inCluster.requestOptions()).headers, { authorization: 'Bearer t0' });
});
