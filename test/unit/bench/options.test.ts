// The bench's options: the deadline it hands to its servers (the holder refuses a fraction).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseOptions } from '../../../bench/options.ts';

for (const argv of [['--quick'], [], ['--quick', '--idle-read-after', '7'], ['--reps', '1', '--seconds', '3']]) {
  test(`bench ${argv.join(' ') || '(defaults)'}: the run's deadline is a whole number of seconds`, () => {
    const o = parseOptions(argv);
    assert.ok(Number.isInteger(o.deadlineSeconds) && o.deadlineSeconds > 0, `deadline ${o.deadlineSeconds}`);
  });
}
