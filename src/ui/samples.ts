// The Prometheus text format, read: one Sample per line of the families the dashboard needs.
// Pure; agents' /metrics bodies come in, samples go out. Only what prom-client writes is
// supported (no timestamps, no exemplars), which is what weft's agents and control plane
// expose.

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  readonly name: string;
  readonly labels: Labels;
  readonly value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(v: string): string {
  return v.replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

/** Samples of the families `wanted` accepts (all when omitted), in order. Malformed lines are skipped. */
export function parseSamples(text: string, wanted?: (name: string) => boolean): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (m === null) continue;
    const name = m[1];
    if (wanted !== undefined && !wanted(name)) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]] = unescape(l[2]);
    const value = Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') continue;
    out.push({ name, labels, value });
  }
  return out;
}

/** The families a body declares (`# TYPE name kind`), sample or no sample. */
export function declaredFamilies(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^# TYPE (\S+) \S+$/gm)) out.push(m[1]);
  return out;
}
