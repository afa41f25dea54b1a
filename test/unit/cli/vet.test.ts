import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vetCommand } from '../../../src/cli/vet.ts';
import { isWeftError } from '../../../src/core/errors.ts';

const NAMESPACES = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    weft.dev/mesh: enabled
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  namespace: shop
`;

const PODS = `apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
spec:
  nodeName: a-node-no-manifest-declares
  serviceAccountName: web
  containers: [{name: app, image: web}]
---
apiVersion: v1
kind: Pod
metadata:
  name: db-1
  namespace: shop
  labels: {app: db}
spec:
  serviceAccountName: db
  containers: [{name: app, image: db}]
`;

const GOOD_SERVICES = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 198.19.0.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: db-from-web, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]
    to: [{operation: {ports: ["5432"]}}]
`;

// Five distinct mistakes, one per kind of check.
const BAD_SERVICES = `apiVersion: v1
kind: Service
metadata: {name: loop, namespace: shop}
spec:
  clusterIP: 127.0.0.10
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-copy, namespace: shop}
spec:
  clusterIP: 198.19.0.10
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: ghost, namespace: shop}
spec:
  clusterIP: 198.19.0.30
  selector: {app: ghost}
  ports: [{port: 80}]
`;

const BAD_POLICY = `apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: from-nobody, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/nobody]}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {a: b}
`;

async function dirWith(t: TestContext, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-vet-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

async function vet(argv: string[]): Promise<{ code: number; lines: string[] }> {
  let text = '';
  const code = await vetCommand(argv, { write: (s) => { text += s; } });
  return { code, lines: text.trimEnd().split('\n') };
}

test('a clean directory: exit 0 and a one-line summary (a pod on an undeclared node is fine)', async (t) => {
  const dir = await dirWith(t, { 'ns.yaml': NAMESPACES, 'pods.yaml': PODS, 'apps/services.yml': GOOD_SERVICES });
  const r = await vet([dir]);
  assert.deepEqual(r.lines, ['weft vet: 6 objects in 3 files, no problems']);
  assert.equal(r.code, 0);
});

test('a directory with five distinct mistakes reports all five, each with file, object and field', async (t) => {
  const dir = await dirWith(t, { 'ns.yaml': NAMESPACES, 'pods.yaml': PODS, 'services.yaml': GOOD_SERVICES, 'bad/services.yaml': BAD_SERVICES, 'bad/policy.yaml': BAD_POLICY });
  const r = await vet([dir]);
  assert.equal(r.code, 1);
  const bad = (f: string) => join(dir, 'bad', f);
  assert.deepEqual(r.lines.slice(0, -1).sort(), [
    `${bad('policy.yaml')}: AuthorizationPolicy/shop/from-nobody: spec.rules[0].from[0].source.principals[0]: no ServiceAccount or Pod has service account shop/nobody`,
    `${bad('policy.yaml')}: ConfigMap/shop/settings: kind: unknown kind "ConfigMap" (known: Namespace, Node, Pod, Service, ServiceAccount, EndpointSlice, AuthorizationPolicy, PeerAuthentication, HTTPRoute, GRPCRoute, DestinationPolicy, RateLimitPolicy, FaultInjection)`,
    `${bad('services.yaml')}: Service/shop/ghost: spec.selector: selects no Pod in namespace shop (app=ghost), so the Service has no endpoints`,
    `${bad('services.yaml')}: Service/shop/loop: spec.clusterIP: "127.0.0.10" cannot be a cluster IP: it is a loopback address`,
    `${bad('services.yaml')}: Service/shop/web-copy: spec.clusterIP: 198.19.0.10 is already the cluster IP of Service shop/web`,
  ]);
  assert.equal(r.lines.at(-1), 'weft vet: 5 problems in 2 files (9 objects in 5 files accepted)');
});

test('a single file, object-level problems, and the trust domain flag', async (t) => {
  const dir = await dirWith(t, {
    'one.yaml': `${NAMESPACES}---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  action: AUDIT
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]
`,
  });
  const r = await vet([join(dir, 'one.yaml')]);
  assert.equal(r.code, 1);
  assert.deepEqual(r.lines[0], `${join(dir, 'one.yaml')}: AuthorizationPolicy/shop/p: spec.action: must be one of ALLOW, DENY, got "AUDIT"`);
  const fixed = join(dir, 'one.yaml');
  await writeFile(fixed, `${NAMESPACES}---
apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]
`);
  assert.equal((await vet([fixed])).code, 0);
  const other = await vet(['--trust-domain', 'example.org', fixed]);
  assert.equal(other.code, 1);
  assert.match(other.lines[0] ?? '', /trust domain "cluster.local" is not the mesh's \("example.org"\)/);
});

test('usage errors are WEFT_CLI_USAGE (exit 2 through main)', async () => {
  await assert.rejects(vetCommand([]), (e: unknown) => isWeftError(e, 'WEFT_CLI_USAGE'));
  await assert.rejects(vetCommand(['/nonexistent/weft-vet']), (e: unknown) => isWeftError(e, 'WEFT_CLI_USAGE') && /cannot read/.test(e.message));
  await assert.rejects(vetCommand(['--trust-domain', 'Bad Domain', '.']), (e: unknown) => isWeftError(e, 'WEFT_CLI_USAGE'));
  await assert.rejects(vetCommand(['--bogus', '.']), (e: unknown) => isWeftError(e, 'WEFT_CLI_USAGE'));
});

test('runs as a process: exit status 1 on problems', async (t) => {
  const dir = await dirWith(t, { 'bad.yaml': BAD_POLICY });
  const script = `import { vetCommand } from ${JSON.stringify(join(import.meta.dirname, '../../../src/cli/vet.ts'))}; process.exitCode = await vetCommand(process.argv.slice(1));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, dir], { encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /weft vet: 2 problems in 1 file/);
});

const ROUTES = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: web, port: 80, weight: 90}, {name: web-v2, port: 80, weight: 10}]
  - matches: [{path: {type: PathPrefix, value: /off}}]
    backendRefs: [{name: web, port: 80, weight: 0}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-a-gateway, namespace: shop}
spec:
  parentRefs: [{name: public}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: broken, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules: [{matches: [{method: {service: "a/b"}}]}]
`;

test('routes: unknown backend, parent not a Service, weights summing to 0, a refused route; and where status goes', async (t) => {
  const dir = await dirWith(t, { 'ns.yaml': NAMESPACES, 'pods.yaml': PODS, 'services.yaml': GOOD_SERVICES, 'routes.yaml': ROUTES });
  const r = await vet([dir]);
  assert.equal(r.code, 1);
  const at = join(dir, 'routes.yaml');
  assert.deepEqual(r.lines.slice(0, -2), [
    `${at}: GRPCRoute/shop/broken: spec.rules[0].matches[0].method.service: must match ^\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$`,
    `${at}: HTTPRoute/shop/canary: spec.rules[0].backendRefs[1]: Service shop/web-v2 does not exist: requests sent there get 500`,
    `${at}: HTTPRoute/shop/canary: spec.rules[1].backendRefs: weights sum to 0: every request this rule matches gets 500`,
    `${at}: HTTPRoute/shop/to-a-gateway: spec.parentRefs[0]: is a gateway.networking.k8s.io/Gateway; weft serves routes whose parent is a Service (GAMMA, group "" kind Service), so it ignores this parent`,
  ]);
  assert.match(r.lines.at(-2) ?? '', /route status .* is written back only by `weft control --kubernetes`/);
  assert.equal(r.lines.at(-1), 'weft vet: 4 problems in 1 file (8 objects in 4 files accepted)');
});

test('hostile files: each is reported as its own problem, naming the limit, the rest is still vetted, and no stack trace is printed', async (t) => {
  const { aliasBomb } = await import('../model/hostile-yaml.ts');
  const dir = await dirWith(t, {
    'ns.yaml': NAMESPACES, 'pods.yaml': PODS, 'services.yaml': GOOD_SERVICES, 'bomb.yaml': aliasBomb(),
    'deep.yaml': `a: ${'['.repeat(30_000)}${']'.repeat(30_000)}\n`, 'broken.yaml': 'kind: Pod\nmetadata:\n  name: a\n   bad: x\n',
  });
  await writeFile(join(dir, 'huge.yaml'), Buffer.alloc(50 * 1000 * 1000, '#'));
  const main = join(import.meta.dirname, '../../../src/cli/main.ts');
  const r = spawnSync(process.execPath, [main, 'vet', dir], { encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stderr, '', 'nothing on stderr');
  const lines = r.stdout.trimEnd().split('\n');
  assert.deepEqual(lines.slice(0, -1), [
    `${join(dir, 'bomb.yaml')}: refused: document 1 expands YAML aliases past the limit of 100 (Excessive alias count indicates a resource exhaustion attack) [WEFT_MANIFEST_ALIAS_LIMIT]`,
    `${join(dir, 'broken.yaml')}:3:9: document 1: invalid YAML: Nested mappings are not allowed in compact mappings (and 1 more in this document) [WEFT_MANIFEST_BAD_YAML]`,
    `${join(dir, 'deep.yaml')}: refused: document 1 nests deeper than the YAML parser can follow (the limit is 64 levels) [WEFT_MANIFEST_TOO_DEEP]`,
    `${join(dir, 'huge.yaml')}: refused unread: 47.7 MiB is over the limit of 4 MiB per manifest file [WEFT_MANIFEST_FILE_TOO_LARGE]`,
  ]);
  assert.equal(lines.at(-1), 'weft vet: 4 problems in 4 files (6 objects in 7 files accepted)');
  assert.doesNotMatch(r.stdout, /\n\s+at /, 'no stack frames');
});

test('PeerAuthentication: vet names a bad mode, a selector matching nothing, and two policies at one scope', async (t) => {
  const PAS = `apiVersion: weft.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: typo, namespace: shop}
spec: {mtls: {mode: STRICTLY}}
---
apiVersion: weft.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: a-strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
---
apiVersion: weft.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: b-permissive, namespace: shop}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: weft.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: nobody, namespace: shop}
spec: {selector: {matchLabels: {app: nobody}}, mtls: {mode: STRICT}}
`;
  const dir = await dirWith(t, { 'ns.yaml': NAMESPACES, 'pods.yaml': PODS, 'pa.yaml': PAS });
  const r = await vet([dir]);
  assert.equal(r.code, 1);
  const file = join(dir, 'pa.yaml');
  assert.deepEqual(r.lines.slice(0, -1), [
    `${file}: PeerAuthentication/shop/typo: spec.mtls.mode: must be one of STRICT, PERMISSIVE, UNSET, got "STRICTLY"`,
    `${file}: PeerAuthentication/shop/b-permissive: spec: conflicts with PeerAuthentication shop/a-strict: both are namespace-wide in shop (no selector); only shop/a-strict (first by name, mode STRICT) is used, this one (mode PERMISSIVE) is ignored`,
    `${file}: PeerAuthentication/shop/nobody: spec.selector.matchLabels: selects no Pod in namespace shop (app=nobody), so it applies to nothing`,
  ]);
});
