// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on pure v2 hosts, elsewhere
// (hybrid hosts) wherever /proc/self/mountinfo shows fstype cgroup2, e.g. /sys/fs/cgroup/unified.

import { readFileSync } from 'node:fs';

/** The cgroup2 mount point, or undefined when cgroup v2 is not mounted. */
export function findCgroup2Mount(mountinfo: string = readFileSync('/proc/self/mountinfo', 'utf8')): string | undefined {
  for (const line of mountinfo.split('\n')) {
    // Fields: id parent major:minor root mountpoint options [optional...] - fstype source superopts
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (fstype !== 'cgroup2') continue;
    const mountPoint = line.slice(0, sep).split(' ')[4];
    if (mountPoint !== undefined) return mountPoint.replace(/\\040/g, ' ');
  }
  return undefined;
}
