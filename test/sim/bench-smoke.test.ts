// Keeps `npm run bench` working: the --quick run end to end as root (cluster, servers,
// HAProxy relays, weft detection, every scenario, report files, cleanup), plus the tool
// output parsers on recorded output. It checks the harness, never a speed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needsRoot } from '../support/root.ts';
import type { BenchReport, PathCell } from '../../bench/report.ts';
import { parseWrk } from '../../bench/tools/wrk.ts';
import { parseSockperf } from '../../bench/tools/sockperf.ts';
import { parseIperf } from '../../bench/tools/iperf3.ts';
import { parseH2load } from '../../bench/tools/h2load.ts';
import { median, pairedDifferences, summarize } from '../../bench/stats.ts';
import { hardFdLimit, idleConnectionsEveryPathHolds, maxRelayedConnections, weftAgentArgs } from '../../bench/options.ts';

const RUN = join(import.meta.dirname, '..', '..', 'bench', 'run.ts');

test('bench --quick: builds, measures every scenario on direct and HAProxy, reports weft, cleans up', { timeout: 300_000 }, async (t) => {
  if (!needsRoot(t, ['haproxy', 'wrk', 'h2load', 'sockperf', 'iperf3', 'taskset', 'prlimit', 'openssl', 'curl', 'ss'])) return;
  const out = mkdtempSync(join(tmpdir(), 'weft-bench-smoke-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));

  const child = spawn(process.execPath, [RUN, '--quick', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  // If the test gives up first, SIGINT lets the harness take its cluster down.
  t.after(() => { if (child.exitCode === null) child.kill('SIGINT'); });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  assert.equal(code, 0, `bench --quick failed:\n${stderr.slice(-3000)}`);

  const cluster = /cluster (bench[0-9a-f]+)/.exec(stderr)?.[1];
  assert.ok(cluster, 'the harness names its cluster');
  assert.doesNotMatch(execFileSync('ip', ['netns', 'list']).toString(), new RegExp(`weft-${cluster}-`), 'namespaces removed');
  assert.equal(existsSync(`/run/weft/sim/${cluster}`), false, 'cluster state removed');

  const files = readdirSync(out).sort();
  const json = files.find((f) => /^bench-.*-quick\.json$/.test(f));
  const md = files.find((f) => /^bench-.*-quick\.md$/.test(f));
  assert.ok(json && md, `report files written: ${files.join(', ')}`);
  const report = JSON.parse(readFileSync(join(out, json), 'utf8')) as BenchReport;
  const table = readFileSync(join(out, md), 'utf8');
  assert.equal(stdout.trim(), table.trim(), 'the table is also printed');

  assert.equal(report.mode, 'quick');
  assert.match(report.machine.kernel, /\d+\.\d+/);
  assert.match(report.machine.node, /^v\d+/);
  assert.deepEqual(report.errors, []);
  const status = new Map(report.paths.map((p) => [p.name, p]));
  assert.equal(status.get('direct')?.available, true);
  assert.equal(status.get('haproxy')?.available, true);
  const weft = status.get('weft');
  assert.ok(weft);
  if (!weft.available) {
    assert.match(weft.status, /^not available yet: ./, 'an unavailable weft says why');
    assert.match(table, /\*\*weft\*\*: not available yet: /);
  }

  const measured = report.paths.filter((p) => p.available).map((p) => p.name);
  const expected: [string, string[]][] = [
    ['fixed-rate', ['p50_ms', 'p90_ms', 'p99_ms', 'added_p99_ms', 'cpu_s_per_1k_req', 'vcpu_per_proxy_per_1k_rps', 'rss_mib_per_proxy_per_1k_rps']],
    ['idle', ['kib_per_conn_per_proxy', 'held']],
    ['saturation', ['rps', 'p50_ms', 'p99_ms']],
    ['http1', ['rps', 'p50_ms', 'p99_ms', 'added_p99_ms', 'cpu_us_per_req']],
    ['h2', ['rps', 'p50_ms', 'p99_ms', 'added_p99_ms', 'cpu_us_per_req']],
    ['conn-rate', ['cps', 'p99_ms']],
    ['bulk', ['gbps_1', 'gbps_8']],
  ];
  // Memory growth can be zero and latency added over direct can be negative on a noisy machine.
  const mayBeZero = new Set(['rss_mib_per_proxy_per_1k_rps', 'kib_per_conn_per_proxy']);
  const proxiesOnly = new Set(['cpu_us_per_req', 'cpu_s_per_1k_req', 'vcpu_per_proxy_per_1k_rps', 'rss_mib_per_proxy_per_1k_rps', 'kib_per_conn_per_proxy']);
  for (const [scenario, metrics] of expected) {
    for (const variant of ['same-node', 'cross-node']) {
      for (const metric of metrics) {
        const row = report.rows.find((r) => r.scenario === scenario && r.variant === variant && r.metric === metric);
        assert.ok(row, `row ${scenario}/${variant}/${metric}`);
        for (const path of measured) {
          const cell: PathCell | undefined = row.byPath[path];
          if (path === 'direct' && (proxiesOnly.has(metric) || metric.startsWith('added_'))) {
            assert.equal(cell, undefined, `direct has no ${metric}`);
            continue;
          }
          if (metric.startsWith('added_') || mayBeZero.has(metric)) {
            assert.ok(cell?.summary !== undefined && Number.isFinite(cell.summary.median), `${scenario}/${variant}/${metric}/${path} has a value`);
            if (mayBeZero.has(metric)) assert.ok(cell.summary.median >= 0, `${scenario}/${variant}/${metric}/${path} >= 0`);
            continue;
          }
          assert.ok(cell?.summary !== undefined && cell.summary.median > 0, `${scenario}/${variant}/${metric}/${path} is positive: ${JSON.stringify(cell)}`);
        }
        if (!row.hidden) {
          assert.ok(table.split('\n').some((l) => l.startsWith(`| ${variant} | ${row.label}`)), `table row ${variant} ${row.label}`);
        }
      }
    }
  }
  const rps = report.rows.find((r) => r.scenario === 'saturation' && r.metric === 'rps' && r.variant === 'cross-node');
  assert.ok(rps?.ratios.haproxyOverDirect !== undefined && rps.ratios.haproxyOverDirect > 0, 'haproxy/direct ratio');
  assert.match(table, /≤ 0\.20 ms added p99/, 'targets printed beside the numbers');
  for (const scenario of ['http1', 'h2']) {
    const cpu = report.rows.find((r) => r.scenario === scenario && r.metric === 'cpu_us_per_req' && r.variant === 'same-node');
    assert.equal(cpu?.target?.text, '≤ 1.2× HAProxy', `${scenario}: CPU per request against HAProxy`);
    if (weft.available) assert.ok(cpu.ratios.weftOverHaproxy !== undefined && cpu.ratios.weftOverHaproxy > 0, `${scenario}: weft/haproxy CPU ratio`);
  }
});

test('tool output parsers read recorded output', () => {
  const wrk = parseWrk('Running 1s test\nWEFT_WRK_JSON {"requests":2000,"duration_us":2000000,"bytes":1,"connect_errors":0,"read_errors":1,"write_errors":0,"status_errors":2,"timeouts":0,"p50_us":250,"p90_us":400,"p99_us":1500,"max_us":9000}\n');
  assert.deepEqual(wrk, { requests: 2000, seconds: 2, rps: 1000, errors: 3, p50Ms: 0.25, p90Ms: 0.4, p99Ms: 1.5 });
  assert.throws(() => parseWrk('Requests/sec: 100\n'), /no WEFT_WRK_JSON line/);

  const sp = parseSockperf([
    'sockperf: [Total Run] RunTime=2.172 sec; Warm up time=400 msec; SentMessages=1928; ReceivedMessages=1928',
    'sockperf: [Valid Duration] RunTime=1.473 sec; SentMessages=1438; ReceivedMessages=1438',
    'sockperf: # dropped messages = 2; # duplicated messages = 0; # out-of-order messages = 0',
    'sockperf: \x1b[2;35mTotal 1438 observations\x1b[0m; each percentile contains 14.38 observations',
    'sockperf: ---> percentile 99.000 = 138.064',
    'sockperf: ---> percentile 90.000 =  130.249',
    'sockperf: ---> percentile 50.000 =   76.351',
  ].join('\n'));
  assert.deepEqual(sp, { sent: 1928, observations: 1438, dropped: 2, p50Ms: 0.076351, p90Ms: 0.130249, p99Ms: 0.138064 });
  assert.throws(() => parseSockperf('sockperf: ERROR: connect failed'), /no run summary|no 50\.000 percentile/);

  const h2 = parseH2load([
    'finished in 2.00s, 500.00 req/s, 520.12KB/s',
    'requests: 1000 total, 1000 started, 1000 done, 998 succeeded, 2 failed, 0 errored, 0 timeout',
    'status codes: 996 2xx, 0 3xx, 0 4xx, 2 5xx',
  ].join('\n'), Array.from({ length: 100 }, (_, i) => `1796180691896853\t200\t${(i + 1) * 10}`).join('\n'));
  assert.deepEqual(h2, { done: 1000, succeeded: 998, errors: 4, seconds: 2, rps: 500, p50Ms: 0.5, p99Ms: 0.99 });
  assert.equal(parseH2load('finished in 393us, 0.00 req/s, 0B/s\nrequests: 0 total, 0 started, 0 done, 0 succeeded, 0 failed, 0 errored, 0 timeout\nstatus codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx\n', '').seconds, 393e-6);
  assert.throws(() => parseH2load('connect: Connection refused\n', ''), /no summary/);
  assert.throws(() => parseH2load('finished in 1s, 1 req/s\nrequests: 5 total, 5 started, 5 done, 5 succeeded, 0 failed, 0 errored, 0 timeout\nstatus codes: 5 2xx, 0 3xx, 0 4xx, 0 5xx', ''), /no per-request log/);

  assert.equal(parseIperf(JSON.stringify({ end: { sum_received: { bits_per_second: 2.5e9 } } })), 2.5);
  assert.throws(() => parseIperf(JSON.stringify({ error: 'unable to connect to server' })), /iperf3: unable to connect/);

  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.deepEqual(summarize([2, Number.NaN, 1, 3]), { median: 2, min: 1, max: 3, n: 3 });
  assert.deepEqual(pairedDifferences([5, 7, Number.NaN], [1, 2, 3]), [4, 5]);
  assert.equal(hardFdLimit('Max open files            1024                 20000                files\n'), 20000);
  assert.equal(maxRelayedConnections(20000), 9872);
  // weft's agent keeps 1,950 of 20,000 from connections: 18,050 left, 256 spare, 2 per outbound connection.
  assert.equal(idleConnectionsEveryPathHolds(20000), 8897);
  assert.deepEqual(weftAgentArgs(20000), ['--max-fds-per-source', '18050']);
});
