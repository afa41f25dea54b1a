// The agent's last good config on disk (issue 9, point 7): what is saved comes back whole,
// mode 0600 (it holds private keys); a damaged or foreign file is refused with a reason that
// names what is wrong, and the agent starts without it instead of failing.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino, type Logger } from 'pino';

import { LAST_GOOD_FILE, LastGoodConfig, parseSaved } from '../../../src/app/last-good.ts';
import type { NodeConfig } from '../../../src/app/mesh-feed.ts';

const CONFIG = {
  version: 'v42', trustBundlePem: '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
  content: { trustDomain: 'cluster.local', workloads: [], services: [] },
} as unknown as NodeConfig;
const CERTS = [{ identity: 'spiffe://cluster.local/ns/shop/sa/web', serial: '1f', keyPem: 'KEY', certPem: 'CERT', chainPem: ['CA'] }];

function logged(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

test('saved, then loaded by a new agent: the same config and certificates, mode 0600', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-last-good-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { logger } = logged();
  const first = new LastGoodConfig(dir, logger);
  assert.equal(first.load(), undefined, 'nothing saved yet');
  first.save(CONFIG, CERTS, 1_700_000_000_000);
  first.flush();
  assert.equal(statSync(join(dir, LAST_GOOD_FILE)).mode & 0o777, 0o600);
  const again = new LastGoodConfig(dir, logger).load();
  assert.deepEqual(again, { config: CONFIG, certificates: CERTS, savedAt: 1_700_000_000_000 });
  // Bursts coalesce: the last one written wins.
  first.save({ ...CONFIG, version: 'v43' }, CERTS);
  first.save({ ...CONFIG, version: 'v44' }, CERTS);
  first.flush();
  assert.equal((JSON.parse(readFileSync(join(dir, LAST_GOOD_FILE), 'utf8')) as { config: { version: string } }).config.version, 'v44');
});

test('a damaged or foreign file is refused, named, and the agent starts without it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-last-good-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, LAST_GOOD_FILE);
  for (const [text, why] of [
    ['{"format":1,"savedAt":1,"config":', /not JSON/],
    ['{"format":7,"savedAt":1}', /format must be 1/],
    ['{"format":1,"savedAt":"x"}', /savedAt must be a number/],
    ['{"format":1,"savedAt":1,"config":{"version":"v"}}', /config must hold version, trustBundlePem, content/],
    [JSON.stringify({ format: 1, savedAt: 1, config: CONFIG, certificates: [{ identity: 'x' }] }), /certificates must be a list of \{identity, keyPem, certPem, chainPem\}/],
  ] as const) {
    assert.throws(() => parseSaved(text, path), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'WEFT_AGENT_LAST_GOOD_INVALID');
      assert.match(err.message, why);
      assert.ok(err.message.startsWith(path), 'names the file');
      return true;
    });
    writeFileSync(path, text);
    const { logger, lines } = logged();
    assert.equal(new LastGoodConfig(dir, logger).load(), undefined, `${text}: started without it`);
    assert.ok(lines.some((l) => l.msg === 'the last good config on disk is unusable; starting without it'));
  }
});
