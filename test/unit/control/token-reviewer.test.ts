import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { StaticTokenReviewer, tokenFingerprint } from '../../../src/control/token-reviewer.ts';

test('tokens map to their node; unknown tokens to nothing', async () => {
  const r = new StaticTokenReviewer(new Map([['aaaaaaaaaaaaaaaa1', 'node-1'], ['bbbbbbbbbbbbbbbb2', 'node-2']]));
  assert.equal(await r.review('aaaaaaaaaaaaaaaa1'), 'node-1');
  assert.equal(await r.review('bbbbbbbbbbbbbbbb2'), 'node-2');
  assert.equal(await r.review('aaaaaaaaaaaaaaaa'), undefined);
  assert.equal(await r.review(''), undefined);
  assert.match(tokenFingerprint('aaaaaaaaaaaaaaaa1'), /^sha256:[0-9a-f]{8}$/);
});

test('the token file written by weft sim (token -> node) loads; bad files are named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-tokens-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => { writeFileSync(join(dir, name), text); return join(dir, name); };
  const good = await StaticTokenReviewer.fromFile(file('good.json', JSON.stringify({ 'Zm9vYmFyYmF6cXV4cXV1eA': 'node-1' })));
  assert.equal(await good.review('Zm9vYmFyYmF6cXV4cXV1eA'), 'node-1');

  const cases: Array<[string, string, RegExp]> = [
    ['missing.json', '', /cannot read the bootstrap token file .*missing\.json/],
    ['syntax.json', '{', /cannot read the bootstrap token file .*syntax\.json/],
    ['array.json', '[]', /array\.json must hold a JSON object mapping token to node name/],
    ['short.json', JSON.stringify({ short: 'node-1' }), /short\.json: the token of node node-1 is 5 characters; bootstrap tokens need at least 16/],
    ['node.json', JSON.stringify({ 'aaaaaaaaaaaaaaaaaaaa': 'Node_1' }), /node\.json: node name "Node_1" is not a DNS-1123 subdomain/],
    ['value.json', JSON.stringify({ 'aaaaaaaaaaaaaaaaaaaa': 7 }), /value\.json: token #1 must map to a node name, got 7/],
  ];
  for (const [name, text, message] of cases) {
    const path = text === '' ? join(dir, name) : file(name, text);
    await assert.rejects(StaticTokenReviewer.fromFile(path), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'WEFT_CONTROL_BAD_TOKEN_FILE', name);
      assert.match(err.message, message);
      return true;
    });
  }
});
