// Does this kernel have what the BPF object asks for? Pure: given `bpftool feature probe
// kernel -j`, the object's program sections and helper numbers (bpf-object.ts), the map types
// in its BTF, and the kernel's helper / map-type numbering (bpf/build/bpf-ids.txt, from the
// kernel's own BTF), one check per program and per map type, each naming what is missing.

import type { BpfProgramSection } from './bpf-object.ts';

export interface FeatureCheck {
  /** Stable id, e.g. `program:cgroup/connect4`, `map:lru_hash`. */
  readonly id: string;
  /** What is checked, for people. */
  readonly what: string;
  readonly ok: boolean;
  /** Why it failed (or a note when it passed). */
  readonly detail?: string;
}

interface SectionKind {
  /** Section name, or a prefix ending in `/`. */
  readonly section: string;
  /** bpftool's program-type key, as in have_<type>_prog_type. */
  readonly progType: string;
  /** The attach point and the kernel that brought it. */
  readonly since: string;
}

// Section names as libbpf reads them (the ones a cgroup/socket capture can use).
const SECTION_KINDS: readonly SectionKind[] = [
  { section: 'cgroup/connect4', progType: 'cgroup_sock_addr', since: 'connect4, Linux 4.17' },
  { section: 'cgroup/connect6', progType: 'cgroup_sock_addr', since: 'connect6, Linux 4.17' },
  { section: 'cgroup/bind4', progType: 'cgroup_sock_addr', since: 'bind4, Linux 4.17' },
  { section: 'cgroup/bind6', progType: 'cgroup_sock_addr', since: 'bind6, Linux 4.17' },
  { section: 'cgroup/sendmsg4', progType: 'cgroup_sock_addr', since: 'sendmsg4, Linux 4.18' },
  { section: 'cgroup/sendmsg6', progType: 'cgroup_sock_addr', since: 'sendmsg6, Linux 4.18' },
  { section: 'cgroup/recvmsg4', progType: 'cgroup_sock_addr', since: 'recvmsg4, Linux 5.2' },
  { section: 'cgroup/recvmsg6', progType: 'cgroup_sock_addr', since: 'recvmsg6, Linux 5.2' },
  { section: 'cgroup/getpeername4', progType: 'cgroup_sock_addr', since: 'getpeername4, Linux 5.8' },
  { section: 'cgroup/getpeername6', progType: 'cgroup_sock_addr', since: 'getpeername6, Linux 5.8' },
  { section: 'cgroup/getsockname4', progType: 'cgroup_sock_addr', since: 'getsockname4, Linux 5.8' },
  { section: 'cgroup/getsockname6', progType: 'cgroup_sock_addr', since: 'getsockname6, Linux 5.8' },
  { section: 'cgroup/getsockopt', progType: 'cgroup_sockopt', since: 'getsockopt, Linux 5.3' },
  { section: 'cgroup/setsockopt', progType: 'cgroup_sockopt', since: 'setsockopt, Linux 5.3' },
  { section: 'cgroup/sock_create', progType: 'cgroup_sock', since: 'sock_create, Linux 4.10' },
  { section: 'cgroup/post_bind4', progType: 'cgroup_sock', since: 'post_bind4, Linux 4.17' },
  { section: 'cgroup/post_bind6', progType: 'cgroup_sock', since: 'post_bind6, Linux 4.17' },
  { section: 'cgroup_skb/', progType: 'cgroup_skb', since: 'cgroup skb, Linux 4.10' },
  { section: 'sockops', progType: 'sock_ops', since: 'sock_ops, Linux 4.13' },
  { section: 'sk_lookup', progType: 'sk_lookup', since: 'sk_lookup, Linux 5.9' },
  { section: 'sk_msg', progType: 'sk_msg', since: 'sk_msg, Linux 4.17' },
  { section: 'sk_skb/', progType: 'sk_skb', since: 'sk_skb, Linux 4.14' },
  // Attached as sk_skb_verdict (the kernel splice, bpf/splice.bpf.c): that attach type is Linux 5.13.
  { section: 'sk_skb', progType: 'sk_skb', since: 'sk_skb verdict, Linux 5.13' },
  { section: 'tc', progType: 'sched_cls', since: 'tc, Linux 4.1' },
  { section: 'tc/', progType: 'sched_cls', since: 'tc, Linux 4.1' },
  { section: 'classifier', progType: 'sched_cls', since: 'tc, Linux 4.1' },
  { section: 'xdp', progType: 'xdp', since: 'XDP, Linux 4.8' },
];

export function sectionKind(section: string): SectionKind | undefined {
  return SECTION_KINDS.find((k) => k.section === section || (k.section.endsWith('/') && section.startsWith(k.section)));
}

export interface BpfIds {
  /** Helper number -> `bpf_<name>`. */
  readonly helpers: ReadonlyMap<number, string>;
  /** Map type number -> bpftool's name (`lru_hash`). */
  readonly mapTypes: ReadonlyMap<number, string>;
}

/** Parses bpf/build/bpf-ids.txt (`BPF_FUNC_get_socket_cookie 46`, `BPF_MAP_TYPE_LRU_HASH 9`). */
export function parseBpfIds(text: string): BpfIds {
  const helpers = new Map<number, string>();
  const mapTypes = new Map<number, string>();
  for (const line of text.split('\n')) {
    const [name, id] = line.trim().split(/\s+/);
    if (name === undefined || id === undefined || !/^\d+$/.test(id)) continue;
    if (name.startsWith('BPF_FUNC_')) helpers.set(Number(id), `bpf_${name.slice('BPF_FUNC_'.length)}`);
    else if (name.startsWith('BPF_MAP_TYPE_')) mapTypes.set(Number(id), name.slice('BPF_MAP_TYPE_'.length).toLowerCase());
  }
  return { helpers, mapTypes };
}

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The map types (numbers) declared in the object's `.maps` section, from `bpftool -j btf dump file OBJ`. */
export function mapTypesFromBtf(btf: unknown): number[] {
  const types = isRecord(btf) && Array.isArray(btf.types) ? btf.types.filter(isRecord) : [];
  const byId = new Map(types.map((t) => [t.id, t]));
  const out = new Set<number>();
  for (const sec of types) {
    if (sec.kind !== 'DATASEC' || sec.name !== '.maps' || !Array.isArray(sec.vars)) continue;
    for (const v of sec.vars.filter(isRecord)) {
      const struct = byId.get(byId.get(v.type_id)?.type_id);
      const member = Array.isArray(struct?.members) ? struct.members.filter(isRecord).find((m) => m.name === 'type') : undefined;
      // __uint(type, N) is `int (*type)[N]`: a pointer to an array of N elements.
      const array = byId.get(byId.get(member?.type_id)?.type_id);
      if (array?.kind === 'ARRAY' && typeof array.nr_elems === 'number') out.add(array.nr_elems);
    }
  }
  return [...out].sort((a, b) => a - b);
}

/** One check per program section (its type and every helper it calls) and per map type. */
export function kernelFeatureChecks(probe: unknown, programs: readonly BpfProgramSection[], mapTypes: readonly number[], ids: BpfIds): FeatureCheck[] {
  const root = isRecord(probe) ? probe : {};
  const section = (name: string): Json => (isRecord(root[name]) ? root[name] : {});
  const checks: FeatureCheck[] = [];
  for (const p of programs) {
    const kind = sectionKind(p.section);
    const id = `program:${p.section}`;
    if (kind === undefined) {
      checks.push({ id, what: `BPF program ${p.section}`, ok: false, detail: `section ${JSON.stringify(p.section)} is not one weft knows how to probe (add it to src/redirect/kernel-features.ts)` });
      continue;
    }
    const what = `BPF program ${p.section} (type ${kind.progType}, ${kind.since})`;
    if (section('program_types')[`have_${kind.progType}_prog_type`] !== true) {
      checks.push({ id, what, ok: false, detail: `the kernel lacks BPF program type ${kind.progType}` });
      continue;
    }
    const available = section('helpers')[`${kind.progType}_available_helpers`];
    const have = new Set(Array.isArray(available) ? available : []);
    const names = p.helpers.map((h) => ids.helpers.get(h) ?? `helper #${h}`);
    const missing = names.filter((n) => !have.has(n));
    checks.push(missing.length === 0
      ? { id, what, ok: true, detail: names.length === 0 ? 'no helpers' : `helpers ${names.join(', ')}` }
      : { id, what, ok: false, detail: `${kind.progType} programs cannot call ${missing.join(', ')} on this kernel` });
  }
  for (const t of mapTypes) {
    const name = ids.mapTypes.get(t) ?? `#${t}`;
    const ok = section('map_types')[`have_${name}_map_type`] === true;
    checks.push({ id: `map:${name}`, what: `BPF map type ${name}`, ok, ...(ok ? {} : { detail: `the kernel lacks BPF map type ${name}` }) });
  }
  return checks;
}
