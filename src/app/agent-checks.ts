// What a running agent says about itself (its admin /config_dump), turned into checks: the
// control plane connection, the node and workload certificates, and the capture of every
// enrolled pod of the node. Pure, so each verdict is tested with a table.

export type CheckStatus = 'pass' | 'fail' | 'warn' | 'skip';

export interface Check {
  readonly group: string;
  readonly id: string;
  readonly what: string;
  readonly status: CheckStatus;
  readonly detail?: string;
}

interface Dump {
  readonly node?: unknown;
  readonly version?: unknown;
  readonly feed?: { readonly connected?: unknown; readonly synced?: unknown; readonly lastError?: unknown; readonly nodeCertificateNotAfter?: unknown; readonly version?: unknown };
  readonly capture?: { readonly mode?: unknown; readonly requested?: unknown; readonly enrolled?: unknown; readonly refused?: unknown };
  readonly certificates?: unknown;
  readonly mesh?: { readonly workloads?: unknown };
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export function agentChecks(dump: Dump, now: number): Check[] {
  const group = 'agent';
  const node = text(dump.node) ?? '?';
  const checks: Check[] = [];
  const add = (id: string, what: string, status: CheckStatus, detail?: string): void => {
    checks.push({ group, id, what, status, ...(detail === undefined ? {} : { detail }) });
  };
  const feed = dump.feed ?? {};
  if ('connected' in feed) {
    if (feed.connected === true) add('control', 'control plane', 'pass', `connected; config version ${text(dump.version) ?? text(feed.version) ?? '?'}`);
    else add('control', 'control plane', 'fail', `not connected${feed.synced === true ? ' (serving the last good config)' : ', and no config yet'}: ${text(feed.lastError) ?? 'no error recorded'}`);
    const notAfter = Date.parse(text(feed.nodeCertificateNotAfter) ?? '');
    if (Number.isNaN(notAfter)) add('node-certificate', 'node certificate', 'fail', 'the agent holds no node certificate');
    else if (notAfter <= now) add('node-certificate', 'node certificate', 'fail', `expired at ${new Date(notAfter).toISOString()}`);
    else add('node-certificate', 'node certificate', 'pass', `valid until ${new Date(notAfter).toISOString()}`);
  } else {
    add('control', 'control plane', 'skip', 'this agent reads a local manifests directory (no control plane)');
  }
  const certs = Array.isArray(dump.certificates) ? dump.certificates as { identity?: unknown; notAfter?: unknown; lastError?: unknown }[] : [];
  for (const c of certs) {
    const id = text(c.identity) ?? '?';
    const notAfter = Date.parse(text(c.notAfter) ?? '');
    if (Number.isNaN(notAfter)) add(`certificate:${id}`, `certificate ${id}`, 'fail', `none issued yet${text(c.lastError) === undefined ? '' : `: ${text(c.lastError)}`}`);
    else if (notAfter <= now) add(`certificate:${id}`, `certificate ${id}`, 'fail', `expired at ${new Date(notAfter).toISOString()}`);
    else add(`certificate:${id}`, `certificate ${id}`, 'pass', `valid until ${new Date(notAfter).toISOString()}`);
  }
  const capture = dump.capture ?? {};
  const mode = text(capture.mode) ?? 'off';
  add('capture-mode', 'capture mode', mode === 'off' ? 'warn' : 'pass', `${mode}${text(capture.requested) !== undefined && capture.requested !== mode ? ` (asked for ${String(capture.requested)})` : ''}`);
  const enrolled = new Set(strings(capture.enrolled));
  const refused = new Map((Array.isArray(capture.refused) ? capture.refused as { pod?: unknown; reason?: unknown }[] : []).map((r) => [text(r.pod) ?? '', text(r.reason) ?? '']));
  const workloads = Array.isArray(dump.mesh?.workloads) ? dump.mesh.workloads as { key?: unknown; node?: unknown; enrolled?: unknown }[] : [];
  for (const w of workloads) {
    if (w.node !== node || w.enrolled !== true) continue;
    const key = text(w.key) ?? '?';
    if (mode === 'off') add(`capture:${key}`, `capture of ${key}`, 'warn', 'capture is off on this node');
    else if (enrolled.has(key)) add(`capture:${key}`, `capture of ${key}`, 'pass', mode);
    else if (refused.has(key)) add(`capture:${key}`, `capture of ${key}`, 'fail', `refused: ${refused.get(key) ?? ''}`);
    else add(`capture:${key}`, `capture of ${key}`, 'fail', 'enrolled but not captured (see the agent log: its cgroup may not be found)');
  }
  return checks;
}
