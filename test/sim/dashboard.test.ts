// The dashboard in a real browser: a 2-node simulated mesh with traffic flowing, `weft sim
// dashboard` forwarding a host loopback port into the control plane, and headless Debian
// Chromium loading the page. The page must name the workloads, show the cross-node edge as
// mutual TLS, and warn about plaintext into an enrolled workload: a pod outside the mesh on
// node-2 calls an enrolled pod on node-1, and node-1 hands that connection to its agent's
// inbound plaintext listener (15006) with a DNAT rule the test adds in node-1's namespace,
// as inbound capture does. Screenshots go to test/artifacts/dashboard/.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { stringify } from 'yaml';

import { defaultManifests } from '../../src/sim/defaults.ts';
import { openBrowser } from '../support/browser.ts';
import { needsRoot } from '../support/root.ts';
import { WEFT, simCluster, uniqueName, type SimStatus } from '../support/sim.ts';
import { inNetns, node, pod } from './mesh-support.ts';

function manifestsDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-dashboard-'));
  for (const f of defaultManifests(2, 2)) writeFileSync(join(dir, f.path), f.text);
  const docs = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'legacy' } },
    // hello takes mutual TLS only; echo keeps the default (PERMISSIVE), so legacy can reach it.
    { apiVersion: 'weft.dev/v1alpha1', kind: 'PeerAuthentication', metadata: { name: 'hello-strict', namespace: 'demo' }, spec: { selector: { matchLabels: { app: 'hello' } }, mtls: { mode: 'STRICT' } } },
    {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'legacy-2', namespace: 'legacy', labels: { app: 'legacy' } },
      spec: { nodeName: 'node-2', containers: [{ name: 'app', image: 'weft/echo', ports: [{ containerPort: 8080 }] }] },
    },
  ];
  writeFileSync(join(dir, 'legacy.yaml'), docs.map((d) => stringify(d)).join('---\n'));
  return dir;
}

/** A bounded request loop inside a pod (at most `count` rounds, 0.2 s apart). */
function loop(cluster: string, podName: string, urls: readonly string[], count: number) {
  const script = `i=0; while [ $i -lt ${count} ]; do ${urls.map((u) => `curl -s -m 2 -o /dev/null ${u};`).join(' ')} i=$((i+1)); sleep 0.2; done`;
  const child = spawn(WEFT, ['sim', 'exec', '--name', cluster, podName, '--', 'sh', '-c', script], { stdio: 'ignore' });
  return { stop: () => child.kill('SIGTERM'), child };
}

async function dashboardUrl(cluster: string, t: { after(fn: () => unknown): void }): Promise<string> {
  const child = spawn(WEFT, ['sim', 'dashboard', '--name', cluster, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGTERM'));
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('weft sim dashboard printed no URL within 20 s')), 20_000);
    lines.on('line', (line) => {
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(line);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`weft sim dashboard exited (${code})`)));
  });
}

test('dashboard in headless Chromium: workloads, the mTLS edge, the plaintext warning', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['chromium', 'curl', 'iptables', 'nsenter'])) return;
  const name = uniqueName('db');
  const dir = manifestsDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s: SimStatus = await simCluster(t, name, ['--nodes', '2', '--manifests', dir]);
  const echo1 = pod(s, 'echo-1-0');
  const hello2 = pod(s, 'hello-2-1');
  const legacy = pod(s, 'legacy-2');
  const node1 = node(s, 'node-1');
  const hello = s.services.find((x) => x.name === 'hello');
  assert.ok(hello !== undefined);
  assert.equal(legacy.enrolled, false);

  // Plaintext from outside the mesh into enrolled echo-1-0, through node-1's agent (15006).
  const dnat = ['-t', 'nat', '-A', 'PREROUTING', '-s', `${legacy.ip}/32`, '-d', `${echo1.ip}/32`, '-p', 'tcp', '--dport', '8080', '-j', 'DNAT', '--to-destination', `${node1.bridgeIp}:15006`];
  const added = await inNetns(node1.netns, ['iptables', ...dnat]);
  assert.equal(added.status, 0, added.stderr);

  const traffic = [
    loop(name, 'echo-1-0', [`http://${hello.vip}:80/`, `http://${hello2.ip}:8080/`], 600),
    loop(name, 'legacy-2', [`http://${echo1.ip}:8080/`], 600),
  ];
  t.after(() => { for (const l of traffic) l.stop(); });

  const url = await dashboardUrl(name, t);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'a loopback URL on the host');
  const browser = await openBrowser();
  t.after(() => browser.close());
  const { page } = browser;
  await page.goto(url, { waitUntil: 'load' });

  // The page polls every 3 s; wait until the traffic shows with a rate.
  const edges = page.locator('#edges tbody tr');
  const mtlsRow = edges.filter({ hasText: 'demo/echo-1-0' }).filter({ hasText: 'demo/hello-2-1' });
  await mtlsRow.first().waitFor({ timeout: 60_000 });
  const plainRow = edges.filter({ hasText: 'legacy/legacy-2' }).filter({ hasText: 'demo/echo-1-0' });
  await plainRow.first().waitFor({ timeout: 60_000 });
  // (Strings: these run in the page, which the test's TypeScript does not type.)
  await page.waitForFunction(`[...document.querySelectorAll('#edges tbody tr')].some((r) => r.textContent.includes('legacy/legacy-2') && r.children[4].textContent !== '0.00')`, undefined, { timeout: 60_000 });
  const shot = await browser.screenshot('dashboard', 'topology');
  t.diagnostic(`screenshot: ${shot}`);

  // Workload names, in the graph's table and the security view.
  const text = await page.locator('body').innerText();
  for (const w of ['echo-1-0', 'hello-1-1', 'echo-2-0', 'hello-2-1', 'legacy-2']) assert.ok(text.includes(w), `the page names ${w}`);
  // The cross-node edge, with its mutual TLS status.
  assert.match(await mtlsRow.first().innerText(), /mTLS/);
  // The service node and its edge.
  assert.ok(await edges.filter({ hasText: 'demo/echo-1-0' }).filter({ hasText: 'svc hello.demo.svc.cluster.local' }).count() > 0, 'echo-1-0 -> svc hello');
  // The plaintext edge into the enrolled workload: marked in the table and raised as a banner.
  assert.match(await plainRow.first().innerText(), /PLAINTEXT ⚠ into enrolled workload/);
  const banner = page.locator('#banners [data-alert="WeftPlaintextIntoEnrolledWorkload"]');
  assert.match(await banner.first().innerText(), /Plaintext traffic into enrolled workload demo\/echo-1-0 from legacy\/legacy-2/);
  assert.match(await page.locator('#plaintext tbody').innerText(), /legacy\/legacy-2\s+demo\/echo-1-0/);
  // The graph itself was drawn by the library the control plane served (no CDN).
  assert.equal(await page.evaluate('typeof window.cytoscape'), 'function');
  assert.ok(await page.locator('#graph canvas').count() > 0, 'cytoscape drew the graph');

  // Security view: enrollment, PeerAuthentication mode, certificates per identity.
  assert.match(await page.locator('#namespaces tbody').innerText(), /demo\s+2\s+all|demo\s+4\s+all/);
  assert.match(await page.locator('#namespaces tbody').innerText(), /legacy\s+1\s+0 of 1/);
  const workloads = await page.locator('#workloads tbody').innerText();
  assert.match(workloads, /demo\/hello-2-1\s+node-2\s+\S+\s+yes\s+STRICT \(demo\/hello-strict\)/, 'the mode PeerAuthentication sets');
  assert.match(workloads, /demo\/echo-1-0\s+node-1\s+\S+\s+yes\s+PERMISSIVE \(default\)/);
  const certs = await page.locator('#certificates tbody').innerText();
  assert.match(certs, /spiffe:\/\/cluster\.local\/ns\/demo\/sa\/echo\s+node-1/);
  assert.match(certs, /spiffe:\/\/cluster\.local\/ns\/demo\/sa\/hello\s+node-2/);
  await page.locator('#security').scrollIntoViewIfNeeded();
  t.diagnostic(`screenshot: ${await browser.screenshot('dashboard', 'security')}`);

  // Control-plane view: both agents connected and in sync.
  const agents = await page.locator('#agents tbody').innerText();
  assert.match(agents, /node-1\s+ACK/);
  assert.match(agents, /node-2\s+ACK/);

  // Loopback only: the URL's port is not open on the machine's other addresses.
  const port = new URL(url).port;
  const other = await inNetns(s.nodes[0]?.netns ?? '', ['curl', '-s', '-m', '2', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${port}/`]);
  assert.notEqual(other.stdout, '200', 'the forward is not reachable from inside the cluster');
});
