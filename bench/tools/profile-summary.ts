// Summarizes V8 CPU profiles (node --cpu-prof): the share of samples by function (self time)
// and by source file (self time), so a profile taken before and after a change can be compared
// as numbers in a commit message.
//
//   node bench/tools/profile-summary.ts FILE.cpuprofile [--top N]

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
}

function shortUrl(url: string): string {
  if (url === '') return '(native)';
  const src = url.indexOf('/src/');
  if (src >= 0) return url.slice(src + 1);
  return url.replace(/^node:/, 'node:').replace(/^file:\/\/.*\/node_modules\//, 'node_modules/');
}

export function summarize(profile: Profile, top: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  for (const s of profile.samples) self.set(s, (self.get(s) ?? 0) + 1);
  const total = profile.samples.length;
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const [id, count] of self) {
    const f = byId.get(id)?.callFrame;
    if (f === undefined) continue;
    const file = shortUrl(f.url);
    const name = `${f.functionName || '(anonymous)'} ${file}${f.url === '' ? '' : `:${f.lineNumber + 1}`}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + count);
    byFile.set(file, (byFile.get(file) ?? 0) + count);
  }
  // Inclusive: each sample counts once for every distinct function on its stack.
  const inclusive = new Map<string, number>();
  for (const [id, count] of self) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = byId.get(at)?.callFrame;
      if (f === undefined || f.functionName === '(root)') continue;
      const name = `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}${f.url === '' ? '' : `:${f.lineNumber + 1}`}`;
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + count);
    }
  }
  const table = (m: Map<string, number>): string => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`).join('\n');
  const idle = [...self].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, c]) => a + c, 0);
  return `${total} samples, ${((100 * idle) / total).toFixed(1)}% idle\n\nby function (self)\n${table(byFunction)}\n\nby function (inclusive)\n${table(inclusive)}\n\nby file (self)\n${table(byFile)}\n`;
}

if (import.meta.main) {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '30' } } });
  for (const file of positionals) {
    process.stdout.write(`== ${file}\n${summarize(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(values.top))}\n`);
  }
}
