// What the simulator's kubelet reads from a pod template: args with $(VAR) expanded, env with
// fieldRefs resolved, volumes joined with their mounts (plus the API access token unless
// automount is off), the readiness probe and the security context; refusals name the field.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_ACCESS_MOUNT, expandVars, podRun, type PodContext } from '../../../../src/sim/install/pod-spec.ts';
import { installSet } from '../../../../src/sim/install/objects.ts';
import { securityPrefix } from '../../../../src/sim/install/kubelet.ts';

const ctx: PodContext = { namespace: 'weft-system', name: 'weft-agent-node-1', uid: '1111-2222', nodeName: 'node-1', podIP: '198.18.0.11', hostIP: '198.18.0.11' };
const none = (): undefined => undefined;

test('$(VAR) expands as the kubelet does: defined names only, $$ escapes', () => {
  const env = { A: 'x', NODE_NAME: 'node-1' };
  const cases: Array<[string, string]> = [
    ['$(A)', 'x'], ['/state/$(NODE_NAME)', '/state/node-1'], ['$(MISSING)', '$(MISSING)'], ['$$(A)', '$(A)'], ['plain', 'plain'], ['$(A)$(A)', 'xx'], ['$A', '$A'],
  ];
  for (const [input, want] of cases) assert.equal(expandVars(input, env), want, input);
});

test('the rendered agent DaemonSet: fieldRefs resolved into args, every volume mounted, probe on 15021, only the chart capabilities', () => {
  const set = installSet([{ path: 'deploy/weft.yaml', text: readFileSync(join(import.meta.dirname, '../../../../deploy/weft.yaml'), 'utf8') }]);
  const agent = set.workloads.find((w) => w.role === 'agent') ?? assert.fail('no agent workload');
  const run = podRun(agent.template, ctx, none, 'DaemonSet/weft-agent');
  assert.equal(run.hostNetwork, true);
  assert.deepEqual(run.env, { NODE_NAME: 'node-1', HOST_IP: '198.18.0.11', POD_UID: '1111-2222' });
  const flag = (f: string): string | undefined => run.args[run.args.indexOf(f) + 1];
  assert.equal(run.args[0], 'agent');
  assert.equal(flag('--capture-address'), '198.18.0.11');
  assert.equal(flag('--state-dir'), '/var/run/weft/agent/node-1');
  assert.equal(flag('--control'), 'weft-control.weft-system.svc:15010');
  assert.deepEqual(run.readiness, { port: 15021, path: '/healthz/ready' });
  const mounts = Object.fromEntries(run.mounts.map((m) => [m.mountPath, m]));
  assert.deepEqual(mounts['/var/run/secrets/weft/token']?.sources, [{ type: 'token', path: 'token', audience: 'weft-control', expirationSeconds: 3600 }]);
  assert.deepEqual(mounts['/var/run/weft-ca']?.sources, [{ type: 'configMap', name: 'weft-ca-root-cert', optional: false }]);
  assert.equal(mounts['/sys/fs/cgroup']?.readOnly, true);
  assert.equal(mounts[API_ACCESS_MOUNT], undefined, 'automountServiceAccountToken: false keeps the API token out');
  assert.deepEqual(run.capabilities, { add: ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE'], drop: ['ALL'] });
  assert.equal(run.readOnlyRootFilesystem, true);
  assert.deepEqual(securityPrefix(run), ['setpriv', '--no-new-privs', '--inh-caps=-all', '--bounding-set=-all,+bpf,+perfmon,+net_admin,+sys_admin,+sys_ptrace', '--']);
});

test('the rendered control Deployment: non-root, API access mounted, downward-API namespace', () => {
  const set = installSet([{ path: 'deploy/weft.yaml', text: readFileSync(join(import.meta.dirname, '../../../../deploy/weft.yaml'), 'utf8') }]);
  const control = set.workloads.find((w) => w.role === 'control') ?? assert.fail('no control workload');
  const run = podRun(control.template, { ...ctx, name: 'weft-control-0', podIP: '198.18.1.10', clusterEnv: { KUBERNETES_SERVICE_HOST: '198.18.0.3' } }, none, 'Deployment/weft-control');
  assert.equal(run.hostNetwork, false);
  assert.equal(run.env.POD_NAMESPACE, 'weft-system');
  assert.equal(run.env.KUBERNETES_SERVICE_HOST, '198.18.0.3');
  assert.equal(run.runAsUser, 65532);
  assert.equal(run.readOnlyRootFilesystem, true);
  assert.deepEqual(run.mounts.map((m) => m.mountPath), [API_ACCESS_MOUNT]);
  assert.deepEqual(run.readiness, { port: 15014, path: '/healthz/ready' });
  assert.deepEqual(securityPrefix(run), ['setpriv', '--no-new-privs', '--reuid=65532', '--regid=65532', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--']);
});

test('env from ConfigMaps and Secrets, named probe ports; what the simulator cannot run is refused by field', () => {
  const template = (container: Record<string, unknown>, spec: Record<string, unknown> = {}) => ({ spec: { containers: [{ name: 'c', ...container }], ...spec } });
  const lookup = (kind: string, ns: string, name: string, key: string) => (kind === 'ConfigMap' && name === 'cm' && key === 'k' ? `v@${ns}` : undefined);
  const ok = podRun(template({
    env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'cm', key: 'k' } } }, { name: 'B', value: '$(A)!' }, { name: 'C', valueFrom: { secretKeyRef: { name: 's', key: 'x', optional: true } } }],
    ports: [{ name: 'ready', containerPort: 9000 }], readinessProbe: { httpGet: { path: '/r', port: 'ready' } },
  }), ctx, lookup, 'W');
  assert.deepEqual(ok.env, { A: 'v@weft-system', B: 'v@weft-system!' });
  assert.deepEqual(ok.readiness, { port: 9000, path: '/r' });
  assert.deepEqual(ok.mounts.map((m) => m.mountPath), [API_ACCESS_MOUNT], 'automount is on by default');
  const refused: Array<[Record<string, unknown>, Record<string, unknown>, RegExp]> = [
    [{ env: [{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'metadata.labels' } } }] }, {}, /W\.spec\.containers\[0\]\.env\[0\]\.valueFrom: fieldRef "metadata\.labels"/],
    [{ env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 's', key: 'x' } } }] }, {}, /Secret weft-system\/s has no key "x"/],
    [{ readinessProbe: { exec: { command: ['true'] } } }, {}, /readinessProbe: only httpGet/],
    [{ readinessProbe: { httpGet: { port: 'nope' } } }, {}, /no container port is named "nope"/],
    [{ volumeMounts: [{ name: 'v', mountPath: '/x' }] }, {}, /no volume named "v"/],
    [{ volumeMounts: [{ name: 'v', mountPath: '/x' }] }, { volumes: [{ name: 'v', nfs: { server: 'x' } }] }, /only hostPath, emptyDir/],
    [{ volumeMounts: [{ name: 'v', mountPath: '/x', subPath: 'a' }] }, { volumes: [{ name: 'v', emptyDir: {} }] }, /subPath mounts are not supported/],
  ];
  for (const [c, s, want] of refused) assert.throws(() => podRun(template(c, s), ctx, lookup, 'W'), (e: Error & { code?: string }) => e.code === 'WEFT_SIM_BAD_MANIFEST' && want.test(e.message), JSON.stringify(c));
  assert.throws(() => podRun({ spec: { containers: [] } }, ctx, lookup, 'W'), /W\.spec\.containers: is empty/);
});

test('mount order: parents first, and a mount covering another one\'s source (the agent\'s /var/run/weft) last', async () => {
  const { mountOrder } = await import('../../../../src/sim/install/kubelet.ts');
  const resolve = (p: string): string => p.replace(/^\/var\/run\//, '/run/');
  const m = (source: string, target: string) => ({ source, target, readOnly: false });
  const state = m('/run/weft/sim/c/install/nodes/node-1/run/weft', '/var/run/weft');
  const token = m('/run/weft/sim/c/install/pods/a/volumes/token', '/var/run/secrets/weft/token');
  const hosts = m('/run/weft/sim/c/install/pods/a/etc-hosts', '/etc/hosts');
  const bpf = m('/sys/fs/bpf/weft/c-node-1-fs', '/sys/fs/bpf');
  const nested = m('/x', '/var/run/secrets/weft/token/sub');
  assert.deepEqual(mountOrder([state, nested, token, hosts, bpf], resolve).map((x) => x.target), ['/etc/hosts', '/sys/fs/bpf', '/var/run/secrets/weft/token', '/var/run/secrets/weft/token/sub', '/var/run/weft']);
});
