// The report as a markdown page: a header naming the machine and the settings, the status
// of each path, then one table per scenario with every path, the ratios and the targets.

import type { BenchReport, MetricRow, TargetStanding } from './report.ts';
import type { PathName } from './options.ts';
import { formatNumber, formatSummary } from './stats.ts';
import { relative } from './targets.ts';

const PATHS: readonly PathName[] = ['direct', 'haproxy', 'weft'];

function ratioCell(r: number | undefined): string {
  return r === undefined ? '–' : `${r.toFixed(2)}×`;
}

function standingCell(t: TargetStanding | undefined, unit: string, weftAvailable: boolean): string {
  if (t === undefined) return '';
  const show = (v: number): string => (relative(t) ? `${v.toFixed(2)}×` : `${formatNumber(v)}${unit === '' ? '' : ` ${unit}`}`);
  if (t.weft !== undefined) return `${t.weft.met ? '✔ met' : '✘ not met'} (${show(t.weft.value)})`;
  const ref = t.haproxy === undefined ? '' : `; HAProxy ${show(t.haproxy.value)} ${t.haproxy.met ? '✔' : '✘'}`;
  return `${weftAvailable ? 'weft: no value' : 'weft n/a'}${ref}`;
}

function cell(r: MetricRow, p: PathName, status: ReadonlyMap<PathName, string>): string {
  const c = r.byPath[p];
  if (c !== undefined) return formatSummary(c.summary);
  const s = status.get(p);
  if (s !== undefined) return s;
  return '–';
}

export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const st = report.settings;
  const statusOf = new Map<PathName, string>();
  for (const p of report.paths) if (!p.available) statusOf.set(p.name, p.status.startsWith('not available yet') ? 'not available yet' : 'not run');
  const weftAvailable = report.paths.some((p) => p.name === 'weft' && p.available);
  const lines: string[] = [
    `# ${report.name} (${report.mode}), ${report.date}`,
    '',
    '| | |',
    '| --- | --- |',
    `| machine | ${m.hostname}: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB |`,
    `| kernel | ${m.kernel} |`,
    `| Node | ${m.node} |`,
    `| tools | HAProxy ${m.tools.haproxy ?? '?'}, wrk ${m.tools.wrk ?? '?'}, sockperf ${m.tools.sockperf ?? '?'}, iperf3 ${m.tools.iperf3 ?? '?'} |`,
    `| load average (1/5/15 min) | ${m.loadAverageAtStart.join(' / ')} at start, ${report.loadAverageAtEnd.join(' / ')} at end |`,
    `| settings | ${st.reps} repetition(s), ${st.loadSeconds} s saturation/connection runs, ${st.fixedSeconds} s fixed-rate runs at ${st.fixedRate} req/s, ${st.bulkSeconds} s bulk runs, wrk ${st.wrkConnections} connections, ${st.idleConnections} idle connections |`,
    `| pinning | proxies (HAProxy, weft agents) on CPU ${st.proxyCpu}; load generators and servers on CPU ${st.loadCpu} (bench/README.md) |`,
    `| duration | ${report.durationSeconds} s |`,
    '',
    '## Paths',
    '',
    ...report.paths.map((p) => `- **${p.name}**: ${p.status}`),
    '',
    'Each cell: median (min–max) over the repetitions; paths interleaved within each repetition. '
      + '"added over direct" pairs repetition i of a path with repetition i of direct. Resource figures are per proxy '
      + '(the path\'s total divided by the proxies it crosses: 1 same-node, 2 cross-node).',
  ];
  if (report.aborted !== undefined) lines.push('', `**Run stopped early: ${report.aborted}** — the tables hold what was measured.`);
  for (const sc of report.scenarios) {
    lines.push('', `## ${sc.title}`, '', `Method: ${sc.method}.${sc.once ? ' Run once per path (memory growth: see README).' : ''}`, '');
    lines.push('| variant | metric | direct | haproxy | weft | haproxy/direct | weft/direct | weft/haproxy | target | weft vs target |');
    lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |');
    for (const r of report.rows.filter((x) => x.scenario === sc.id && !x.hidden)) {
      const metric = `${r.label}${r.unit === '' ? '' : ` (${r.unit})`}`;
      lines.push(`| ${r.variant} | ${metric} | ${PATHS.map((p) => cell(r, p, statusOf)).join(' | ')} | ${ratioCell(r.ratios.haproxyOverDirect)} | ${ratioCell(r.ratios.weftOverDirect)} | ${ratioCell(r.ratios.weftOverHaproxy)} | ${r.target?.text ?? ''} | ${standingCell(r.target, r.unit, weftAvailable)} |`);
    }
  }
  if (report.errors.length > 0) {
    lines.push('', '## Failed runs', '');
    for (const e of report.errors) lines.push(`- ${e.scenario} ${e.variant} ${e.path}: ${e.message.replace(/\n/g, ' ')}`);
  }
  if (report.notes.length > 0) {
    lines.push('', '## Notes from the tools', '');
    for (const n of report.notes) lines.push(`- ${n.scenario} ${n.variant} ${n.path}: ${n.message}`);
  }
  return `${lines.join('\n')}\n`;
}
