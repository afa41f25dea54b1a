// The shared node proxy end to end on a 3-node simulated mesh (eBPF capture, real agents and
// control plane): load balancing across nodes, what the underlay carries, copy correctness,
// half-close, a destination dying mid-transfer, the agent's readiness/admin/metrics endpoints
// and access log. One cluster for the whole file: the default 3x3 demo layout plus an
// unenrolled namespace `plain` (one pod per node) as the no-mesh baseline. Run on the mesh
// `weft sim` starts and on the rendered install (deploy/weft.yaml).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { promtoolCheckMetrics } from '../support/promtool.ts';
import { needsRoot } from '../support/root.ts';
import { inPod, MESH_SETUPS, simCluster, uniqueName, type SimStatus } from '../support/sim.ts';
import { defaultManifests } from '../../src/sim/defaults.ts';
import {
  accessLines, agentLog, agentMetrics, clientInPod, eventually, fileSize, nodeGet, pod, readPcap, runClient, tlsStreams, type AccessLine,
} from './mesh-support.ts';

const MIB = 1024 * 1024;
/** The copy check moves 1 GiB by default (about a minute here); WEFT_MESH_COPY_MIB changes it. */
const COPY_BYTES = Number(process.env.WEFT_MESH_COPY_MIB ?? 1024) * MIB;
const COPY_KEY = '000102030405060708090a0b0c0d0e0f';
const ECHO_PODS = ['echo-1-0', 'echo-1-2', 'echo-2-0', 'echo-2-2', 'echo-3-0', 'echo-3-2'];
const PLAIN_NS = 'plain';

function manifestsDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-mesh-traffic-'));
  for (const f of defaultManifests(3, 3)) writeFileSync(join(dir, f.path), f.text);
  const docs: object[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: PLAIN_NS } }];
  for (let n = 1; n <= 3; n++) {
    docs.push({
      apiVersion: 'v1', kind: 'Pod', metadata: { name: `plain-${n}`, namespace: PLAIN_NS, labels: { app: 'plain' } },
      spec: { nodeName: `node-${n}`, containers: [{ name: 'app', image: 'weft/echo', ports: [{ containerPort: 8080 }] }] },
    });
  }
  writeFileSync(join(dir, 'plain.yaml'), docs.map((d) => stringify(d)).join('---\n'));
  return dir;
}

/** sha256 of `bytes` of AES-128-CTR keystream (what `openssl enc -aes-128-ctr` makes of /dev/zero). */
function keystreamSha256(keyHex: string, bytes: number): string {
  const cipher = createCipheriv('aes-128-ctr', Buffer.from(keyHex, 'hex'), Buffer.alloc(16));
  const hash = createHash('sha256');
  const zeros = Buffer.alloc(MIB);
  for (let left = bytes; left > 0; left -= MIB) hash.update(cipher.update(left >= MIB ? zeros : zeros.subarray(0, left)));
  return hash.digest('hex');
}

/** Counts `hello from <pod>` answers in curl output. */
function answeredBy(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const hit of text.matchAll(/hello from (\S+) /g)) m.set(hit[1] ?? '', (m.get(hit[1] ?? '') ?? 0) + 1);
  return m;
}

for (const [setup, setupArgs] of MESH_SETUPS) test(`mesh traffic on 3 nodes: balancing, encrypted underlay, copy, half-close, resets, endpoints (${setup})`, { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['curl', 'nsenter', 'tcpdump', 'openssl', 'promtool', 'bash'])) return;
  const name = uniqueName('mt');
  const dir = manifestsDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s: SimStatus = await simCluster(t, name, ['--nodes', '3', '--manifests', dir, ...setupArgs]);
  // Installed, the control-plane replicas are pods too (weft-system, outside the mesh).
  const apps = s.pods.filter((p) => p.namespace !== 'weft-system');
  assert.equal(apps.filter((p) => p.enrolled).length, 9);
  assert.deepEqual(apps.filter((p) => !p.enrolled).map((p) => p.name).sort(), ['plain-1', 'plain-2', 'plain-3']);
  const client = pod(s, 'hello-1-1');
  const underlay = `weft-${name}-underlay`;

  // The underlay capture runs from before the first cross-node connection, so every tunnel
  // connection's handshake is in it; it is stopped and read by the capture subtest below.
  const pcap = join(dir, 'underlay.pcap');
  const tcpdump = spawn('timeout', ['120', 'nsenter', `--net=/run/netns/${underlay}`, 'tcpdump', '-i', 'ul', '-n', '-U', '--immediate-mode', '-s', '0', '-c', '200000', '-w', pcap, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const tcpdumpExit = new Promise<void>((resolve) => tcpdump.on('close', () => resolve()));
  t.after(async () => {
    tcpdump.kill('SIGTERM');
    await tcpdumpExit;
  });
  let tcpdumpErr = '';
  tcpdump.stderr.on('data', (b: Buffer) => { tcpdumpErr += b.toString(); });
  assert.ok(await eventually(() => (tcpdumpErr.includes('listening on') ? true : undefined), 10_000), `tcpdump did not start: ${tcpdumpErr}`);

  const REQUESTS = 90;
  const logFrom = Object.fromEntries(s.nodes.map((n) => [n.name, fileSize(agentLog(name, n.name))]));

  await t.test(`${REQUESTS} requests to demo/echo from node-1 reach every endpoint on every node, each logged once at each reporter`, async () => {
    const r = await inPod(name, client.name, ['sh', '-c', `for i in $(seq ${REQUESTS}); do curl -sS -m 5 -w ' port=%{local_port}\\n' http://198.19.0.10/; done`], 60_000);
    assert.equal(r.status, 0, r.stderr);
    const by = answeredBy(r.stdout);
    t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries(by))}`);
    assert.equal([...by.values()].reduce((a, b) => a + b, 0), REQUESTS, `every request answered:\n${r.stdout}`);
    // Requests are balanced by peak-EWMA latency over two random picks, so node-1's own pods take
    // most (a remote pod wins only a pair of two remote ones: about 1 in 10 each); at least 3
    // each missed once in ~50 runs, at least one is missed once in ~3,000.
    for (const p of ECHO_PODS) assert.ok((by.get(p) ?? 0) >= 1, `${p} answered ${by.get(p) ?? 0} times of ${REQUESTS}`);
    assert.deepEqual([...by.keys()].filter((p) => !ECHO_PODS.includes(p)), [], 'only echo endpoints answer the echo service');
    // Captured: each endpoint sees its own node's agent as the client.
    for (const line of r.stdout.split('\n').filter((l) => l.startsWith('hello from'))) {
      const m = /hello from \S+ ns=demo node=node-(\d) client=(\S+):\d+/.exec(line);
      assert.ok(m, line);
      assert.equal(m[2], `198.18.${m[1]}.1`, `answered through node-${m[1]}'s agent: ${line}`);
    }

    // One access-log line per connection at each reporter.
    const ports = [...r.stdout.matchAll(/port=(\d+)/g)].map((m) => m[1]).sort();
    const sourceLines = (): AccessLine[] => accessLines(agentLog(name, 'node-1'), logFrom['node-1'])
      .filter((l) => l.reporter === 'source' && l.src.workload === client.name && l.dst.address?.endsWith(':8080') === true);
    const complete = await eventually(() => (sourceLines().length >= REQUESTS ? true : undefined), 10_000);
    const src = sourceLines();
    assert.ok(complete, `node-1 logged ${src.length} source lines for ${REQUESTS} connections`);
    assert.deepEqual(src.map((l) => l.src.address?.split(':')[1]).sort(), ports, 'exactly one source line per client port');
    for (const l of src) {
      assert.equal(l.flags, '-', JSON.stringify(l));
      assert.equal(l.security, l.dst.workload?.startsWith('echo-1-') === true ? 'none' : 'mutual_tls', JSON.stringify(l));
    }
    for (const n of ['node-2', 'node-3']) {
      const want = ECHO_PODS.filter((p) => p.startsWith(`echo-${n.slice(-1)}-`)).reduce((sum, p) => sum + (by.get(p) ?? 0), 0);
      const lines = (): AccessLine[] => accessLines(agentLog(name, n), logFrom[n]).filter((l) => l.reporter === 'destination' && l.src.workload === client.name);
      await eventually(() => (lines().length >= want ? true : undefined), 10_000);
      const got = lines();
      assert.equal(got.length, want, `${n}: one destination line per connection its pods answered`);
      for (const l of got) {
        assert.equal(l.security, 'mutual_tls');
        assert.equal(l.src.identity, 'spiffe://cluster.local/ns/demo/sa/hello');
        assert.equal(l.flags, '-');
      }
    }
  });

  await t.test('the underlay carries only TLS between agents on 15008, never the payload', async () => {
    const marker = `weft-plaintext-marker-${randomBytes(8).toString('hex')}`;
    const control = `weft-control-marker-${randomBytes(8).toString('hex')}`;
    // Meshed: to pods on the other nodes and through the service.
    const targets = [`${pod(s, 'echo-2-0').ip}:8080`, `${pod(s, 'echo-3-2').ip}:8080`, ...Array.from({ length: 6 }, () => '198.19.0.10:80')];
    const r = await inPod(name, client.name, ['sh', '-c', targets.map((a) => `curl -sS -m 5 --data-binary 'body ${marker} end' http://${a}/ && echo`).join(' && ')], 60_000);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.split('\n').filter((l) => l === `body ${marker} end`).length, targets.length, 'every POST echoed');
    // Not meshed (the baseline): plain-1 -> plain-2 across the same underlay.
    const c = await inPod(name, 'plain-1', ['curl', '-sS', '-m', '5', '--data-binary', `body ${control} end`, `http://${pod(s, 'plain-2').ip}:8080/`]);
    assert.equal(c.stdout, `body ${control} end`, c.stderr);

    // Packets reach the file in order: once the baseline's marker is there, so is all before it.
    const flushed = await eventually(() => (readFileSync(pcap).includes(control) ? true : undefined), 10_000);
    tcpdump.kill('SIGTERM');
    await tcpdumpExit;
    const { packets, bytes } = readPcap(pcap);
    t.diagnostic(`underlay: ${packets.length} TCP packets, ${bytes.length} pcap bytes`);
    assert.ok(flushed === true && bytes.includes(control), 'the capture sees plaintext pod traffic that crosses nodes (baseline)');
    assert.equal(bytes.includes(marker), false, 'the meshed payload never crosses the underlay in clear');

    const nodeIps = new Set(s.nodes.map((n) => n.ip));
    const plainIps = new Set(s.pods.filter((p) => !p.enrolled).map((p) => p.ip));
    const betweenNodes = packets.filter((p) => nodeIps.has(p.src) && nodeIps.has(p.dst));
    assert.ok(betweenNodes.length > 0, 'node-to-node traffic was captured');
    assert.deepEqual(betweenNodes.filter((p) => p.sport !== 15008 && p.dport !== 15008).map((p) => `${p.src}:${p.sport}>${p.dst}:${p.dport}`), [], 'agents talk to each other only on 15008');
    const toTunnel = betweenNodes.filter((p) => p.dport === 15008).reduce((n, p) => n + p.payload.length, 0);
    assert.ok(toTunnel > REQUESTS * 75, `requests went over 15008 (${toTunnel} bytes)`);
    const podIps = packets.flatMap((p) => [p.src, p.dst]).filter((ip) => /^198\.18\.[1-9]\d*\./.test(ip));
    assert.deepEqual([...new Set(podIps.filter((ip) => !plainIps.has(ip)))], [], 'no enrolled pod address appears on the underlay');

    const streams = tlsStreams(betweenNodes);
    assert.ok(streams.length >= 2, `tunnel connections opened during the capture (${streams.length} directions)`);
    for (const st of streams) {
      assert.equal(st.notTls, undefined, `${st.flow} is TLS records throughout: ${st.notTls}`);
      assert.ok(st.records.handshake >= 1, `${st.flow} starts with a handshake`);
    }
    assert.ok(streams.reduce((n, st) => n + st.applicationBytes, 0) > REQUESTS * 75, 'application data rode in TLS records');
  });

  await t.test(`${COPY_BYTES / MIB} MiB through the tunnel come back byte-identical`, { timeout: 240_000 }, async () => {
    const started = Date.now();
    const cmd = `set -o pipefail; head -c ${COPY_BYTES} /dev/zero | openssl enc -aes-128-ctr -K ${COPY_KEY} -iv 00000000000000000000000000000000 -nosalt `
      + `| curl -sS -f -T - -H 'expect:' -w '%{stderr}code=%{http_code} down=%{size_download}\\n' http://${pod(s, 'echo-2-0').ip}:8080/ | sha256sum`;
    const from = fileSize(agentLog(name, 'node-1'));
    const [r, want] = await Promise.all([inPod(name, client.name, ['bash', '-c', cmd], 220_000), Promise.resolve().then(() => keystreamSha256(COPY_KEY, COPY_BYTES))]);
    const seconds = (Date.now() - started) / 1000;
    t.diagnostic(`${COPY_BYTES / MIB} MiB up and back in ${seconds.toFixed(1)} s (${((2 * COPY_BYTES) / MIB / seconds).toFixed(1)} MiB/s both ways)`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`code=200 down=${COPY_BYTES}\\n`));
    assert.equal(r.stdout.split(' ')[0], want, 'the echoed stream hashes like the stream sent');
    const line = await eventually(() => accessLines(agentLog(name, 'node-1'), from).find((l) => l.src.workload === client.name && l.dst.workload === 'echo-2-0'), 5_000);
    assert.ok(line, 'the transfer is logged');
    assert.ok(line.bytes_received >= COPY_BYTES && line.bytes_sent >= COPY_BYTES, `logged bytes ${line.bytes_received} up / ${line.bytes_sent} down`);
  });

  await t.test('a half-closed upload gets its full answer (across nodes and on one node)', async () => {
    for (const server of ['echo-2-2', 'echo-1-2']) {
      const srv = clientInPod(name, server, 'halfclose-server', { port: 9000 });
      try {
        await srv.waitFor((l) => l.event === 'listening', 15_000, `half-close server in ${server}`);
        const r = await runClient({ cluster: name, pod: client.name }, 'halfclose', { host: pod(s, server).ip, port: 9000, bytes: 4 * MIB, seed: server });
        assert.equal(r.ending, 'end', `${server}: ${JSON.stringify(r)}`);
        assert.equal(r.received, 4 * MIB, `${server}: whole answer after the client's FIN`);
        assert.equal(r.receivedSha256, r.sentSha256, `${server}: the answer is the upload`);
        const seen = await srv.waitFor((l) => l.event === 'request', 5_000, 'the server saw the FIN');
        assert.equal(seen.sha256, r.sentSha256);
      } finally {
        srv.stop();
      }
    }
  });

  // How a transfer ends when the server process is SIGKILLed mid-way, meshed and not: the
  // client must see the same ending as without the mesh (never a clean, complete-looking one).
  const killMidTransfer = async (from: string, victim: string, kind: 'download' | 'upload'): Promise<{ code: number; bytes: number; stderr: string }> => {
    const target = pod(s, victim);
    const curl = kind === 'download'
      ? `curl -sS --limit-rate 4M -o /dev/null -w 'bytes=%{size_download}' http://${target.ip}:8080/bytes/1073741824`
      : `head -c 1073741824 /dev/zero | curl -sS --limit-rate 4M -T - -H 'expect:' -o /dev/null -w 'bytes=%{size_upload}' http://${target.ip}:8080/`;
    const run = inPod(name, from, ['bash', '-c', curl], 60_000);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    process.kill(target.pid, 'SIGKILL');
    const r = await run;
    return { code: r.status, bytes: Number(/bytes=(\d+)/.exec(r.stdout)?.[1] ?? -1), stderr: r.stderr };
  };

  await t.test('killing the destination server mid-download ends the client as it would without the mesh', async () => {
    const from = fileSize(agentLog(name, 'node-1'));
    const direct = await killMidTransfer('plain-1', 'plain-3', 'download');
    const meshed = await killMidTransfer(client.name, 'hello-3-1', 'download');
    t.diagnostic(`direct: curl exit ${direct.code} after ${direct.bytes} bytes; meshed: exit ${meshed.code} after ${meshed.bytes} bytes (${meshed.stderr.trim()})`);
    // The kernel FINs a killed process's socket when nothing was left unread: curl sees the
    // body end short of its content-length (18), not a complete transfer.
    assert.equal(direct.code, 18, `baseline: ${direct.stderr}`);
    assert.equal(meshed.code, direct.code, meshed.stderr);
    assert.ok(meshed.bytes > 0 && meshed.bytes < 1073741824, `the download had started and was cut (${meshed.bytes} bytes)`);
    const line = await eventually(() => accessLines(agentLog(name, 'node-1'), from).find((l) => l.dst.workload === 'hello-3-1'), 5_000);
    assert.ok(line, 'logged at the source');
  });

  await t.test('killing the destination server mid-upload resets the client, as it would without the mesh', async () => {
    const from = { 'node-1': fileSize(agentLog(name, 'node-1')), 'node-2': fileSize(agentLog(name, 'node-2')) };
    const direct = await killMidTransfer('plain-1', 'plain-2', 'upload');
    const meshed = await killMidTransfer(client.name, 'hello-2-1', 'upload');
    t.diagnostic(`direct: curl exit ${direct.code} (${direct.stderr.trim()}); meshed: exit ${meshed.code} (${meshed.stderr.trim()})`);
    // Unread request bytes make the kernel answer with RST. curl reports it as a send failure
    // (55, "Broken pipe") or a receive failure (56, "Connection reset by peer") depending on
    // which call meets it first; both are resets, never a clean end (0 or 18).
    const RESET = [55, 56];
    assert.ok(RESET.includes(direct.code), `baseline: ${direct.stderr}`);
    assert.ok(RESET.includes(meshed.code), `meshed: exit ${meshed.code}: ${meshed.stderr}`);
    assert.match(meshed.stderr, /reset by peer|Broken pipe/);
    for (const [n, reporter] of [['node-1', 'source'], ['node-2', 'destination']] as const) {
      const line = await eventually(() => accessLines(agentLog(name, n), from[n]).find((l) => l.dst.workload === 'hello-2-1' && l.reporter === reporter), 5_000);
      assert.equal(line?.flags, 'UC', `${n} logs an upstream reset: ${JSON.stringify(line)}`);
    }
  });

  await t.test('readiness on :15021, admin config_dump without keys on 127.0.0.1:15000', async () => {
    for (const n of s.nodes) {
      const ready = await nodeGet(s, n.name, `http://${n.ip}:15021/healthz/ready`);
      assert.equal(ready.code, 200, `${n.name} ready: ${ready.body}`);
      const admin = await nodeGet(s, n.name, 'http://127.0.0.1:15000/config_dump');
      assert.equal(admin.code, 200);
      assert.doesNotMatch(admin.body, /PRIVATE KEY|keyPem/, `${n.name} config_dump carries no key`);
      const dump = JSON.parse(admin.body) as { node: string; certificates: { identity: string; serial: string; notAfter: string }[]; capture: { mode: string; enrolled: string[] } };
      assert.equal(dump.node, n.name);
      assert.deepEqual(dump.certificates.map((c) => c.identity).sort(), ['spiffe://cluster.local/ns/demo/sa/echo', 'spiffe://cluster.local/ns/demo/sa/hello']);
      for (const c of dump.certificates) assert.match(c.serial, /^[0-9a-f]+$/i);
      assert.equal(dump.capture.mode, 'ebpf');
      assert.deepEqual(dump.capture.enrolled.sort(), s.pods.filter((p) => p.node === n.name && p.enrolled).map((p) => `${p.namespace}/${p.name}`).sort());
      // The admin port is for the node only.
      const outside = await nodeGet(s, n.name, `http://${n.ip}:15000/config_dump`);
      assert.equal(outside.code, 0, 'admin does not answer on the node address');
    }
  });

  await t.test('promtool accepts every agent\'s /metrics', async () => {
    for (const n of s.nodes) {
      const text = await agentMetrics(s, n.name);
      // The requests above were HTTP: request metrics at both reporters; opaque ones (the half-close test) count as TCP.
      assert.match(text, /^istio_requests_total\{reporter="(source|destination)"/m, `${n.name} has request metrics`);
      assert.match(text, /^istio_request_duration_milliseconds_bucket\{/m, `${n.name} has the request duration histogram`);
      const verdict = promtoolCheckMetrics(text);
      assert.ok(verdict.ok, `promtool on ${n.name}'s metrics:\n${verdict.output}`);
    }
    assert.match(await agentMetrics(s, 'node-1'), /^istio_tcp_connections_opened_total\{reporter="source"/m, 'node-1 has connection metrics for the opaque upload');
  });

  await t.test('cross-node connection rate (informal)', async () => {
    const r = await runClient({ cluster: name, pod: client.name }, 'connection-loop', {
      targets: [`${pod(s, 'echo-2-0').ip}:8080`, `${pod(s, 'echo-3-0').ip}:8080`], durationMs: 5_000, stopFile: join(dir, 'no-such-file'), parallel: 4, timeoutMs: 5_000,
    }, 30_000);
    t.diagnostic(`cross-node: ${Number(r.ok)} new connections with one request each in ${Number(r.ms)} ms = ${(Number(r.ok) / (Number(r.ms) / 1000)).toFixed(0)}/s (4 in parallel)`);
    assert.equal(r.failed, 0, JSON.stringify(r.failures));
    assert.ok(Number(r.ok) > 0);
    // Requests on kept-alive connections (streams on pooled tunnels), when wrk is there.
    if (spawnSync('sh', ['-c', 'command -v wrk']).status === 0) {
      const w = await inPod(name, client.name, ['wrk', '-t', '1', '-c', '8', '-d', '5s', 'http://198.19.0.10/'], 30_000);
      const rate = /Requests\/sec:\s+([\d.]+)/.exec(w.stdout)?.[1];
      t.diagnostic(`demo/echo over kept-alive connections (wrk, 8 connections): ${rate ?? '?'} requests/s`);
      assert.doesNotMatch(w.stdout, /Socket errors|Non-2xx/, w.stdout);
    }
  });
});
