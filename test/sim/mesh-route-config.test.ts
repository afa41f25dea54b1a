// Routes from directory manifests to the agents that need them, on a 2-node simulated mesh
// with the real control plane: producer routes reach every meshed node, a consumer route
// only the node where its namespace has enrolled workloads; an edit of the route file is
// pushed; a broken edit keeps the route's last good version. Read from each agent's
// /config_dump (the routes it would apply).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { needsRoot } from '../support/root.ts';
import { simCluster, uniqueName, type SimStatus } from '../support/sim.ts';
import { eventually, nodeGet } from './mesh-support.ts';

const yaml = (docs: readonly object[]): string => docs.map((d) => stringify(d)).join('---\n');

function cluster(): object[] {
  const ns = (name: string) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'weft.dev/mesh': 'enabled' } } });
  const pod = (name: string, namespace: string, node: number) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels: { app: name } },
    spec: { nodeName: `node-${node}`, containers: [{ name: 'app', image: 'weft/echo', ports: [{ containerPort: 8080 }] }] },
  });
  return [
    ns('shop'), ns('guest'),
    pod('web', 'shop', 1), pod('api', 'shop', 2), pod('visitor', 'guest', 2),
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '198.19.0.30', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
  ];
}

function routes(weight: number, broken = false): object[] {
  return [
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'producer', namespace: 'shop' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
        rules: [{ matches: [{ path: { type: 'PathPrefix', value: broken ? 'no-slash' : '/' } }], backendRefs: [{ name: 'web', port: 80, weight }] }],
      },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'consumer', namespace: 'guest' },
      spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', namespace: 'shop' }], rules: [{ backendRefs: [{ name: 'web', namespace: 'shop', port: 80 }] }] },
    },
  ];
}

interface Dump { readonly mesh?: { readonly routes?: readonly { namespace: string; name: string; rules: { backendRefs: { weight: number }[] }[] }[] } }

test('routes reach the agents whose callers they affect, and follow edits of their file', { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter'])) return;
  const name = uniqueName('rc');
  const dir = mkdtempSync(join(tmpdir(), 'weft-route-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'cluster.yaml'), yaml(cluster()));
  writeFileSync(join(dir, 'routes.yaml'), yaml(routes(5)));
  const s: SimStatus = await simCluster(t, name, ['--nodes', '2', '--manifests', dir]);
  const routesOn = async (node: string): Promise<Dump['mesh']> => {
    const r = await nodeGet(s, node, 'http://127.0.0.1:15000/config_dump');
    assert.equal(r.code, 200);
    return (JSON.parse(r.body) as Dump).mesh;
  };
  const names = async (node: string): Promise<string> => ((await routesOn(node))?.routes ?? []).map((r) => `${r.namespace}/${r.name}`).join(',');
  const weight = async (node: string): Promise<number | undefined> => (await routesOn(node))?.routes?.find((r) => r.name === 'producer')?.rules[0]?.backendRefs[0]?.weight;

  assert.equal(await eventually(async () => ((await names('node-2')) === 'guest/consumer,shop/producer' ? true : undefined), 30_000), true, `node-2 has ${await names('node-2')}`);
  assert.equal(await names('node-1'), 'shop/producer', 'no guest workload on node-1: the consumer route stays away');

  // The control plane watches the manifest directory the simulator keeps.
  const live = join('/run/weft/sim', name, 'manifests');
  const file = (await import('node:fs')).readdirSync(live).find((f) => f.endsWith('routes.yaml')) ?? assert.fail(`no routes file in ${live}`);
  writeFileSync(join(live, file), yaml(routes(7)));
  assert.equal(await eventually(async () => ((await weight('node-1')) === 7 && (await weight('node-2')) === 7 ? true : undefined), 30_000), true, 'the edit reached both agents');

  writeFileSync(join(live, file), yaml(routes(9, true)));
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual([await weight('node-1'), await weight('node-2')], [7, 7], 'an invalid edit keeps the last good route');
});
