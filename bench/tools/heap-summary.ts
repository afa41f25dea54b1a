// Summarizes a V8 heap snapshot (node:v8 writeHeapSnapshot): retained-by-nobody-in-particular
// self sizes grouped by object type and constructor name, with counts, so the objects an idle
// connection costs can be read off (run with N connections held, divide by N).
//
//   node bench/tools/heap-summary.ts FILE.heapsnapshot [--top N] [--per N]

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Snapshot {
  readonly snapshot: { readonly meta: { readonly node_fields: readonly string[]; readonly node_types: readonly [readonly string[], ...unknown[]] } };
  readonly nodes: readonly number[];
  readonly strings: readonly string[];
}

export function summarizeHeap(s: Snapshot, top: number, per: number): string {
  const fields = s.snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const types = s.snapshot.meta.node_types[0];
  const groups = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + typeAt] ?? 0] ?? '?';
    const rawName = s.strings[s.nodes[i + nameAt] ?? 0] ?? '';
    // Strings and code are grouped by type only; objects and closures by constructor / function name.
    const name = type === 'object' || type === 'closure' || type === 'native' ? rawName.slice(0, 60) : '';
    const key = `${type} ${name}`;
    const size = s.nodes[i + sizeAt] ?? 0;
    total += size;
    const g = groups.get(key) ?? { count: 0, bytes: 0 };
    g.count += 1;
    g.bytes += size;
    groups.set(key, g);
  }
  const rows = [...groups.entries()].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top)
    .map(([k, g]) => `${(g.bytes / per).toFixed(0).padStart(8)} B ${(g.count / per).toFixed(2).padStart(8)} x  ${k}`);
  return `${(total / per).toFixed(0)} bytes in all (per ${per})\n${rows.join('\n')}\n`;
}

if (import.meta.main) {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '40' }, per: { type: 'string', default: '1' } } });
  for (const file of positionals) {
    process.stdout.write(`== ${file}\n${summarizeHeap(JSON.parse(readFileSync(file, 'utf8')) as Snapshot, Number(values.top), Number(values.per))}\n`);
  }
}
