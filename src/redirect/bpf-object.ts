// What a compiled BPF object asks of the kernel, read from the object itself: its program
// sections (each names a program type and attach point, e.g. `cgroup/connect4`) and the
// helpers each program calls (the `call` instructions with a helper number). The probe and
// `weft check` check exactly these, so a program someone adds is covered without a list to
// keep in step. A minimal ELF64 little-endian reader: section headers and instructions only.

const SHF_EXECINSTR = 0x4;
const SHT_PROGBITS = 1;
const BPF_CALL = 0x85;
const BPF_LD_IMM64 = 0x18;

export interface BpfProgramSection {
  /** The section name, e.g. `cgroup/connect4`, `sockops`. */
  readonly section: string;
  /** Helper numbers (enum bpf_func_id) the program calls, ascending. */
  readonly helpers: readonly number[];
}

function fail(why: string): never {
  throw new Error(`not a BPF ELF object: ${why}`);
}

/** The program sections of an ELF64 LE BPF object (`.text` subprograms excluded: they are called, not loaded alone). */
export function bpfProgramSections(elf: Buffer): BpfProgramSection[] {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) fail('no ELF magic');
  if (elf[4] !== 2 || elf[5] !== 1) fail('not a 64-bit little-endian ELF');
  if (elf.readUInt16LE(18) !== 247) fail('e_machine is not EM_BPF (247)');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  if (shentsize < 64 || shoff + shnum * shentsize > elf.length) fail('section headers out of bounds');
  const header = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: elf.readUInt32LE(at), type: elf.readUInt32LE(at + 4), flags: Number(elf.readBigUInt64LE(at + 8)),
      offset: Number(elf.readBigUInt64LE(at + 24)), size: Number(elf.readBigUInt64LE(at + 32)),
    };
  };
  const strtab = header(shstrndx);
  const nameAt = (off: number): string => {
    const start = strtab.offset + off;
    const end = elf.indexOf(0, start);
    return elf.toString('latin1', start, end < 0 ? strtab.offset + strtab.size : end);
  };
  const out: BpfProgramSection[] = [];
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    if (h.type !== SHT_PROGBITS || (h.flags & SHF_EXECINSTR) === 0 || h.size === 0) continue;
    const section = nameAt(h.name);
    if (section === '.text' || section.startsWith('.')) continue;
    if (h.offset + h.size > elf.length) fail(`section ${section} out of bounds`);
    const helpers = new Set<number>();
    for (let at = h.offset; at + 8 <= h.offset + h.size; at += 8) {
      const code = elf[at];
      // src_reg 0: a helper; 1 is a call to another BPF function, 2 a kfunc.
      if (code === BPF_CALL && ((elf[at + 1] ?? 0) >> 4) === 0) helpers.add(elf.readInt32LE(at + 4));
      if (code === BPF_LD_IMM64) at += 8; // a 16-byte instruction
    }
    out.push(Object.freeze({ section, helpers: Object.freeze([...helpers].sort((a, b) => a - b)) }));
  }
  return out;
}
