// removePinDir: a node's pin directory goes, and its base with the last node's.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removePinDir } from '../../../src/redirect/pin-dirs.ts';

test('removePinDir keeps the base while another node has pins, removes it with the last', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'weft-pin-dirs-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const base = join(root, 'weft');
  for (const node of ['a-node-1', 'a-node-2']) {
    mkdirSync(join(base, node, 'progs'), { recursive: true });
    writeFileSync(join(base, node, 'progs', 'connect4'), '');
  }
  removePinDir(join(base, 'a-node-1'));
  assert.equal(existsSync(join(base, 'a-node-1')), false, 'the node\'s pins are gone');
  assert.equal(existsSync(join(base, 'a-node-2', 'progs', 'connect4')), true, 'the other node keeps its pins');
  removePinDir(join(base, 'a-node-2'));
  assert.equal(existsSync(base), false, 'the base goes with the last node');
  removePinDir(join(base, 'a-node-2')); // already gone: nothing to do, nothing thrown
  assert.equal(existsSync(root), true, 'nothing above the base is touched');
});
