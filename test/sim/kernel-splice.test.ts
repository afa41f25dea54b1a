// The same-node kernel splice end to end: a 1-node simulated mesh (eBPF capture, a real agent
// that loaded bpf/splice.bpf.c), real clients in pods, Services whose ports are declared
// opaque TCP (so the HTTP layer never parses them). curl uploads a file to the echo pods and
// hashes what comes back; a raw TCP client half-closes and gets its bytes back; repeated
// requests are answered. Each connection's bytes were moved by
// the kernel (the agent's counter says so, not JavaScript) and are logged exactly.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import { inPod, simCluster, uniqueName, type SimStatus } from '../support/sim.ts';
import { defaultManifests } from '../../src/sim/defaults.ts';
import { accessLines, agentLog, agentMetrics, clientInPod, eventually, fileSize, pod, runClient, sample } from './mesh-support.ts';

const MIB = 1024 * 1024;
const KERNEL = 'weft_kernel_splice_connections_total';
const ECHO_TCP = '198.19.0.200';
const HALF_TCP = '198.19.0.201';

/** Opaque-TCP Services: echo's 8080, and a half-close server in its own pod on 9000. */
const OPAQUE = `apiVersion: v1
kind: Service
metadata: {name: echo-tcp, namespace: demo}
spec:
  clusterIP: ${ECHO_TCP}
  selector: {app: echo}
  ports: [{name: tcp-echo, port: 8080, targetPort: 8080, protocol: TCP, appProtocol: tcp}]
---
apiVersion: v1
kind: Service
metadata: {name: half, namespace: demo}
spec:
  clusterIP: ${HALF_TCP}
  selector: {app: half}
  ports: [{name: tcp-half, port: 9000, targetPort: 9000, protocol: TCP, appProtocol: tcp}]
---
apiVersion: v1
kind: Pod
metadata: {name: half-1, namespace: demo, labels: {app: half}}
spec:
  nodeName: node-1
  serviceAccountName: echo
  containers: [{name: app, image: weft/echo, ports: [{containerPort: 9000}]}]
`;

test('same-node opaque connections move in the kernel: curl, a checked bulk transfer, half-close, exact bytes', { timeout: 240_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'bash', 'sha256sum'])) return;
  const name = uniqueName('ks');
  const dir = mkdtempSync(join(tmpdir(), 'weft-kernel-splice-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of defaultManifests(1, 3)) writeFileSync(join(dir, f.path), f.text);
  writeFileSync(join(dir, 'opaque.yaml'), OPAQUE);
  const s: SimStatus = await simCluster(t, name, ['--nodes', '1', '--manifests', dir]);
  const client = pod(s, 'hello-1-1');
  const log = agentLog(name, 'node-1');
  assert.match(readFileSync(log, 'utf8'), /loaded the same-node kernel splice/, 'the agent loaded the kernel splice');
  const kernelCount = async (): Promise<number> => sample(await agentMetrics(s, 'node-1'), KERNEL, { result: 'kernel' });

  await t.test('curl uploads 48 MiB to an echo pod on the same node and gets the same bytes back, logged exactly', async () => {
    const file = join(dir, 'upload.bin');
    const body = randomBytes(48 * MIB);
    writeFileSync(file, body);
    const before = await kernelCount();
    const from = fileSize(log);
    const r = await inPod(name, client.name, ['bash', '-c', `set -o pipefail; curl -sS -f --data-binary @${file} -H 'expect:' `
      + `-w '%{stderr}req=%{size_request} up=%{size_upload} hdr=%{size_header} down=%{size_download}\\n' http://${ECHO_TCP}:8080/ | sha256sum`], 120_000);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.split(' ')[0], createHash('sha256').update(body).digest('hex'), 'the echoed body hashes like the upload');
    const m = /req=(\d+) up=(\d+) hdr=(\d+) down=(\d+)/.exec(r.stderr);
    assert.ok(m, r.stderr);
    const [, req, up, hdr, down] = m.map(Number);
    assert.equal(up, body.length);
    assert.equal(down, body.length);
    const line = await eventually(() => accessLines(log, from).find((l) => l.reporter === 'source' && l.src.workload === client.name && l.dst.workload?.startsWith('echo-1-') === true), 10_000);
    assert.ok(line, 'the connection is logged');
    assert.equal(line.flags, '-', JSON.stringify(line));
    assert.equal(line.bytes_received, (req ?? 0) + (up ?? 0), 'request bytes as curl sent them');
    // The echo answers with chunked encoding, whose framing curl's size_download leaves out
    // (about 9 bytes per 64 KiB chunk); the raw TCP case below checks both directions exactly.
    const framing = line.bytes_sent - (hdr ?? 0) - (down ?? 0);
    assert.ok(framing >= 0 && framing <= body.length / 4096, `response bytes ${line.bytes_sent} = curl's ${(hdr ?? 0) + (down ?? 0)} + chunk framing ${framing}`);
    assert.ok((await kernelCount()) >= before + 1, 'the kernel moved this connection');
  });

  await t.test('a half-closed raw TCP upload gets its whole answer; both directions counted to the byte', async () => {
    const srv = clientInPod(name, 'half-1', 'halfclose-server', { port: 9000 });
    try {
      await srv.waitFor((l) => l.event === 'listening', 15_000, 'half-close server');
      const before = await kernelCount();
      const from = fileSize(log);
      const bytes = 8 * MIB + 13;
      const r = await runClient({ cluster: name, pod: client.name }, 'halfclose', { host: HALF_TCP, port: 9000, bytes, seed: 'kernel' });
      assert.equal(r.ending, 'end', JSON.stringify(r));
      assert.equal(r.received, bytes);
      assert.equal(r.receivedSha256, r.sentSha256);
      const line = await eventually(() => accessLines(log, from).find((l) => l.reporter === 'source' && l.dst.address?.endsWith(':9000') === true), 10_000);
      assert.ok(line, 'logged');
      assert.equal(line.bytes_received, bytes);
      assert.equal(line.bytes_sent, bytes);
      assert.equal(line.flags, '-');
      assert.equal(await kernelCount(), before + 1, 'moved by the kernel');
    } finally {
      srv.stop();
    }
  });

  await t.test('requests through the Service VIP to same-node endpoints are answered, each connection in the kernel', async () => {
    const before = await kernelCount();
    const r = await inPod(name, client.name, ['sh', '-c', `for i in $(seq 20); do curl -sS -m 5 http://${ECHO_TCP}:8080/ || exit 1; echo; done`], 60_000);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('hello from echo-1-')).length, 20, r.stdout);
    assert.ok(await eventually(async () => ((await kernelCount()) >= before + 20 ? true : undefined), 5_000), 'all 20 in the kernel');
    const metrics = await agentMetrics(s, 'node-1');
    assert.equal(sample(metrics, KERNEL, { result: 'refused' }), 0, 'no pair was refused');
  });

  await t.test('a DENY policy that arrives mid-download resets the kernel-spliced connection', async () => {
    const from = fileSize(log);
    const before = await kernelCount();
    const download = inPod(name, client.name, ['bash', '-c', `curl -sS --limit-rate 2M -o /dev/null -w 'bytes=%{size_download}' http://${ECHO_TCP}:8080/bytes/1073741824`], 60_000);
    assert.ok(await eventually(async () => ((await kernelCount()) > before ? true : undefined), 10_000), 'the download is in the kernel');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    // The control plane watches the manifest directory the simulator keeps.
    writeFileSync(join('/run/weft/sim', name, 'manifests', 'deny.yaml'), `apiVersion: weft.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-hello, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules: [{from: [{source: {principals: ['spiffe://cluster.local/ns/demo/sa/hello']}}]}]
`);
    const r = await download;
    const bytes = Number(/bytes=(\d+)/.exec(r.stdout)?.[1] ?? -1);
    t.diagnostic(`curl exit ${r.status} after ${bytes} bytes: ${r.stderr.trim()}`);
    assert.equal(r.status, 56, `reset, not a clean end: ${r.stderr}`);
    assert.ok(bytes > 0 && bytes < 1073741824, `cut mid-way (${bytes} bytes)`);
    const line = await eventually(() => accessLines(log, from).find((l) => l.reporter === 'source' && l.src.workload === client.name && l.flags !== '-'), 10_000);
    assert.ok(line, 'the reset connection is logged');
    assert.equal(line.flags, 'DENY', JSON.stringify(line));
    assert.match(line.detail ?? '', /policy change/);
    assert.ok(line.bytes_sent >= bytes, `the kernel's count (${line.bytes_sent}) covers what curl got (${bytes})`);
    const denied = await inPod(name, client.name, ['curl', '-sS', '-m', '5', `http://${ECHO_TCP}:8080/`]);
    assert.notEqual(denied.status, 0, 'a new connection is refused too');
  });
});
