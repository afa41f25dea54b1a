import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTextUpTo, readTextUpToSync } from '../../../src/core/bounded-read.ts';

test('reads a file up to the limit, refuses a larger one unread, and /dev/zero stops one byte past it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-bounded-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const small = join(dir, 'small.txt');
  await writeFile(small, 'héllo');
  const big = join(dir, 'big.txt');
  await writeFile(big, Buffer.alloc(300_000, 'x'));
  for (const read of [readTextUpTo, (p: string, n: number) => new Promise((resolve) => resolve(readTextUpToSync(p, n)))]) {
    assert.deepEqual(await read(small, 6), { text: 'héllo', bytes: 6 });
    assert.deepEqual(await read(big, 299_999), { tooLarge: true, bytes: 300_000 });
    assert.equal((await read(big, 300_000) as { text: string }).text.length, 300_000);
    // A character device reports size 0 and never ends: the read must stop by itself.
    assert.deepEqual(await read('/dev/zero', 200_000), { tooLarge: true, bytes: 200_001 });
    await assert.rejects(read(join(dir, 'missing'), 10), { code: 'ENOENT' });
  }
});
