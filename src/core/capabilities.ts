// Linux capabilities of this process, from the CapEff line of /proc/self/status.

export const CAPABILITY_BITS: Readonly<Record<string, number>> = Object.freeze({
  CAP_NET_ADMIN: 12, CAP_NET_RAW: 13, CAP_SYS_ADMIN: 21, CAP_SYS_RESOURCE: 24, CAP_PERFMON: 38, CAP_BPF: 39,
});

/** The effective capability set as a bit mask; 0n when the line is missing. */
export function effectiveCapabilities(procSelfStatus: string): bigint {
  const hex = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(procSelfStatus)?.[1];
  return hex === undefined ? 0n : BigInt(`0x${hex}`);
}

export function hasCapability(mask: bigint, name: string): boolean {
  const bit = CAPABILITY_BITS[name];
  return bit !== undefined && (mask & (1n << BigInt(bit))) !== 0n;
}
