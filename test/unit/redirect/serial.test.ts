import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Serial } from '../../../src/redirect/serial.ts';

test('operations run one at a time in call order, and a failure does not stop the next', async () => {
  const serial = new Serial();
  const log: string[] = [];
  const step = (name: string, ms: number, fail = false) => serial.run(async () => {
    log.push(`${name}:start`);
    await new Promise((r) => setTimeout(r, ms));
    log.push(`${name}:end`);
    if (fail) throw new Error(name);
    return name;
  });
  const results = await Promise.allSettled([step('a', 20), step('b', 1, true), step('c', 5)]);
  assert.deepEqual(log, ['a:start', 'a:end', 'b:start', 'b:end', 'c:start', 'c:end']);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
});
