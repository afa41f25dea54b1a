// The OCI image (npm run image): built offline from Debian's packages and this checkout
// (cached while its inputs are unchanged), then run with podman: `weft --version` and
// `weft vet` on manifests mounted into the container, as the default non-root user; what the
// build prunes (node's symbols, node_modules files, the system's package tools) must leave
// every module, dependency, the native addon and the tools the agent runs loadable; 250 MB at most.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const env = { ...process.env, CONTAINERS_CONF: join(ROOT, 'scripts', 'containers.conf') };
const MAX_IMAGE_BYTES = 250e6;

// Imports every module of src/ (but the simulator, the CLI entry and worker entry points,
// which start things) and every production dependency Node loads, as the pruned image holds them.
const IMPORT_ALL = `
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
const files = [];
const walk = (d) => { for (const e of readdirSync(d, { withFileTypes: true })) {
  const p = join(d, e.name);
  if (e.isDirectory()) { if (e.name !== 'sim') walk(p); } else if (e.name.endsWith('.ts') && e.name !== 'main.ts' && !e.name.includes('worker')) files.push(p);
} };
walk('/opt/weft/src');
for (const f of files) await import(f);
// cytoscape runs in the dashboard's browser: only the file it is served from must be there.
const deps = Object.keys(JSON.parse(readFileSync('/opt/weft/package.json', 'utf8')).dependencies).filter((d) => d !== 'cytoscape');
for (const d of deps) await import(d);
readFileSync('/opt/weft/node_modules/cytoscape/dist/cytoscape.min.js');
console.log('imported ' + files.length + ' modules and ' + deps.length + ' dependencies');
`;

function podman(args: readonly string[]) {
  return spawnSync('podman', args, { encoding: 'utf8', env, timeout: 120_000 });
}

test('the image builds offline and runs weft --version and weft vet under podman', { timeout: 900_000 }, (t) => {
  if (!needsRoot(t, ['podman', 'mmdebstrap', 'runc', 'strip'])) return;
  const build = spawnSync('bash', [join(ROOT, 'scripts', 'image.sh')], { encoding: 'utf8', env, timeout: 880_000 });
  assert.equal(build.status, 0, build.stderr);
  const ref = build.stdout.trim();
  assert.match(ref, /^localhost\/weft:\d+\.\d+\.\d+-[0-9a-f]{12}$/);
  t.diagnostic(build.stderr.trim().split('\n').at(-1) ?? '');
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

  const v = podman(['run', '--rm', ref, '--version']);
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stdout, new RegExp(`^weft ${version.replaceAll('.', '\\.')} \\(node v24\\.`));
  const user = podman(['run', '--rm', '--entrypoint', 'id', ref, '-u']);
  assert.equal(user.stdout.trim(), '65532', 'the default user is not root');
  const tools = podman(['run', '--rm', '--entrypoint', 'sh', ref, '-c',
    'bpftool version && iptables-restore --version && iptables --version && ip -V && nsenter --version && unshare --version && mount --version && test -f /opt/weft/bpf/build/redirect.bpf.o && test -f /opt/weft/bpf/build/splice.bpf.o && echo ok']);
  assert.match(tools.stdout, /^bpftool v[\s\S]*\(nf_tables\)[\s\S]*ok\n$/, tools.stdout + tools.stderr);
  const node = '/opt/weft/node_modules/node/bin/node';
  const addon = podman(['run', '--rm', '--entrypoint', node, ref, '-e', "require('/opt/weft/native/build/Release/weft_native.node'); console.log('addon loaded')"]);
  assert.equal(addon.stdout.trim(), 'addon loaded', `the stripped node loads the native addon: ${addon.stderr}`);
  const imports = podman(['run', '--rm', '--workdir', '/opt/weft', '--entrypoint', node, ref, '--input-type=module', '-e', IMPORT_ALL]);
  assert.match(imports.stdout, /^imported \d{3,} modules and \d+ dependencies\n$/, imports.stderr);
  const size = Number(podman(['image', 'inspect', '--format', '{{.Size}}', ref]).stdout.trim());
  assert.ok(size > 0 && size <= MAX_IMAGE_BYTES, `the image is ${(size / 1e6).toFixed(0)} MB, over ${MAX_IMAGE_BYTES / 1e6} MB`);

  const dir = mkdtempSync(join(tmpdir(), 'weft-image-vet-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'good.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {weft.dev/mesh: enabled}\n');
  const good = podman(['run', '--rm', '-v', `${dir}:/manifests:ro`, ref, 'vet', '/manifests']);
  assert.equal(good.status, 0, good.stdout + good.stderr);
  writeFileSync(join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {clusterIP: 127.0.0.1, ports: [{port: 80}]}\n');
  const bad = podman(['run', '--rm', '-v', `${dir}:/manifests:ro`, ref, 'vet', '/manifests']);
  assert.equal(bad.status, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout, /bad\.yaml: Service\/shop\/web: spec\.clusterIP: "127\.0\.0\.1" cannot be a cluster IP: it is a loopback address/);

  // A second build with the same inputs is the cached image.
  const again = spawnSync('bash', [join(ROOT, 'scripts', 'image.sh')], { encoding: 'utf8', env, timeout: 60_000 });
  assert.equal(again.stdout.trim(), ref);
  assert.match(again.stderr, /up to date/);
});
