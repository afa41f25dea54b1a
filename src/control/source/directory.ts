// A directory of YAML (or JSON) manifests, watched for changes. Every change rescans the
// directory, so files replaced by rename (editors, `kubectl create configmap` volumes that
// swap a `..data` symlink) are seen like in-place writes. Reloads cannot tear the mesh:
// - a changed file is read only once it has been stable for a quiet period (`> file` and
//   in-place editors leave it empty or half-written for a moment);
// - a file that fails to parse, or is over a limit (model/manifest-limits.ts), keeps its last
//   good objects, with its problems reported (file, line, column, the limit), until it parses;
// - a change that would remove a file's every object, or more than a share of all objects at
//   once, is held back for a grace period (removal-guard.ts) and logged before it applies;
// - problems are per file: nothing one file holds stops another from applying.
//
// Each directory gets its own non-recursive watch: Node's recursive fs.watch on Linux (a JS
// layer over per-entry watches) stops reporting after a file has been replaced by rename a
// couple of times, so an editor's third save would go unseen.

import { watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { totalLimitProblem, type ManifestProblem } from '../../model/manifests.ts';
import { manifestLimits, type ManifestLimits } from '../../model/manifest-limits.ts';
import type { RawObject } from '../../model/types.ts';
import { describeError } from '../../core/errors.ts';
import { silentLogger, type ConfigSource, type SnapshotListener, type SourceLogger } from './contract.ts';
import { Debouncer } from './debounce.ts';
import { sourceError, SourceErrors } from './errors.ts';
import { fileSignature, readManifestFile, type ManifestFileRead } from './manifest-read.ts';
import { DEFAULT_REMOVAL_GUARD, guardRemovals, type FileKeys, type RemovalGuardOptions } from './removal-guard.ts';

export interface DirectorySourceOptions {
  readonly directory: string;
  /** Quiet time after the last change before rescanning (default 50 ms). */
  readonly debounceMs?: number;
  /** How often to try watching again after the directory vanished (default 1000 ms). */
  readonly rewatchMs?: number;
  /**
   * A changed file is read once it has been stable this long, by its ctime (which every
   * write, truncate and rename moves, and no one can set back) or by our own watch (default
   * 200 ms). It adds to the propagation time of every change, less the debounce.
   */
  readonly quietMs?: number;
  /** Mass removals: how long they are held back, and what share of the objects makes one. */
  readonly removalGuard?: Partial<RemovalGuardOptions>;
  readonly limits?: Partial<ManifestLimits>;
  readonly log?: SourceLogger;
  /** Milliseconds since the epoch (tests). */
  readonly now?: () => number;
}

const EXTENSIONS = ['.yaml', '.yml', '.json'];
export const DEFAULT_QUIET_MS = 200;
const MAX_DEPTH = 8;

/** What the last read of a file found. */
interface FileRead extends Omit<ManifestFileRead, 'text' | 'missing'> {
  /** The stat signature of the version read (or refused unread). */
  readonly signature: string;
  /** A digest of the text read: a rewrite with the same content is not a change. */
  readonly digest: string | undefined;
}

/** What the mesh has from a file: the objects of its last good version, and its problems. */
interface Applied {
  readonly objects: readonly RawObject[];
  readonly problems: readonly ManifestProblem[];
  /** The digest of the text the objects came from: the same text again is not a change. */
  readonly digest: string | undefined;
}

const NOTHING: Applied = Object.freeze({ objects: Object.freeze([]), problems: Object.freeze([]), digest: undefined });

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** The identity of a raw object for counting removals; objects without a name count by position. */
function objectKey(o: RawObject): string {
  const md = o.body.metadata;
  const m = typeof md === 'object' && md !== null ? md as Record<string, unknown> : {};
  return typeof m.name === 'string' ? `${o.kind}/${typeof m.namespace === 'string' ? m.namespace : ''}/${m.name}` : `${o.kind}@${o.source.file}#${o.source.doc}`;
}

const KEPT = ' (keeping this file\'s last good objects)';

/** Manifest files under `dir`, sorted; hidden entries (`.git`, `..data`) skipped, symlinked files followed. */
export async function listManifestFiles(dir: string): Promise<string[]> {
  return listFiles(dir);
}

/** `dirs` collects every directory scanned, `dir` first. */
async function listFiles(dir: string, depth = 0, dirs: string[] = []): Promise<string[]> {
  dirs.push(dir);
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (depth < MAX_DEPTH) out.push(...await listFiles(path, depth + 1, dirs));
      continue;
    }
    if (!EXTENSIONS.some((e) => entry.name.endsWith(e))) continue;
    if (entry.isSymbolicLink()) {
      const target = await stat(path).catch(() => undefined);
      if (target?.isFile() !== true) continue; // dangling, or a symlinked directory (could loop)
    } else if (!entry.isFile()) continue;
    out.push(path);
  }
  return out.sort();
}

export class DirectorySource implements ConfigSource {
  readonly #dir: string;
  readonly #log: SourceLogger;
  readonly #rewatchMs: number;
  readonly #quietMs: number;
  readonly #guard: RemovalGuardOptions;
  readonly #limits: ManifestLimits;
  readonly #now: () => number;
  readonly #debouncer: Debouncer;
  /** The last read of each file still listed. */
  #reads = new Map<string, FileRead>();
  /** Versions seen but not read yet (not quiet long enough): signature and when first seen. */
  readonly #unsettled = new Map<string, { readonly signature: string; readonly since: number }>();
  /** What the mesh has from each file. */
  #applied = new Map<string, Applied>();
  /** Files whose mass removal is held back, and since when. */
  #held: ReadonlyMap<string, number> = new Map();
  #dirProblem: ManifestProblem | undefined;
  #listener: SnapshotListener | undefined;
  /** One non-recursive watch per scanned directory; the root's is the first. */
  readonly #watchers = new Map<string, FSWatcher>();
  #rewatchTimer: NodeJS.Timeout | undefined;
  /** A rescan once a quiet period or a grace period is over. */
  #wakeTimer: NodeJS.Timeout | undefined;
  #wakeAt = Infinity;
  #state: 'new' | 'running' | 'closed' = 'new';

  constructor(options: DirectorySourceOptions) {
    this.#dir = options.directory;
    this.#log = options.log ?? silentLogger;
    this.#rewatchMs = options.rewatchMs ?? 1000;
    this.#quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
    this.#guard = { ...DEFAULT_REMOVAL_GUARD, ...options.removalGuard };
    this.#limits = manifestLimits(options.limits);
    this.#now = options.now ?? Date.now;
    this.#debouncer = new Debouncer(options.debounceMs ?? 50, () => this.#reload(), (err) => {
      this.#log.warn({ err: describeError(err), directory: this.#dir }, 'manifest directory reload failed');
    });
  }

  async start(onSnapshot: SnapshotListener): Promise<void> {
    if (this.#state !== 'new') throw sourceError(SourceErrors.BAD_STATE, `this directory source was already ${this.#state === 'closed' ? 'closed' : 'started'}`);
    const st = await stat(this.#dir).catch((err: unknown) => {
      throw sourceError(SourceErrors.NO_DIRECTORY, `manifest directory ${this.#dir}: ${describeError(err)}`, err);
    });
    if (!st.isDirectory()) throw sourceError(SourceErrors.NO_DIRECTORY, `${this.#dir} is not a directory`);
    this.#state = 'running';
    this.#listener = onSnapshot;
    await this.#reload(true);
    // One more (debounced, serialized) scan after the watch is set, for changes made during the first.
    this.#watch();
    this.#debouncer.trigger();
  }

  #watch(): void {
    if (this.#state !== 'running') return;
    this.#watchDirectory(this.#dir);
  }

  /** Watches `dir` (not recursively) unless it is already; false when it cannot be watched. */
  #watchDirectory(dir: string): boolean {
    if (this.#watchers.has(dir)) return true;
    const root = dir === this.#dir;
    try {
      // persistent: false — a watch alone must not keep the process alive.
      const w = watch(dir, { persistent: false }, () => this.#debouncer.trigger());
      w.on('error', (err: unknown) => {
        if (root) {
          this.#log.warn({ err: describeError(err), directory: this.#dir }, 'watching the manifest directory failed; retrying');
          this.#unwatch();
          this.#scheduleRewatch();
        } else {
          // A subdirectory went away (or cannot be watched): the rescan drops or re-adds it.
          w.close();
          if (this.#watchers.get(dir) === w) this.#watchers.delete(dir);
        }
        this.#debouncer.trigger();
      });
      this.#watchers.set(dir, w);
      return true;
    } catch (err: unknown) {
      if (root) {
        this.#log.warn({ err: describeError(err), directory: this.#dir }, 'cannot watch the manifest directory; retrying');
        this.#scheduleRewatch();
      }
      return false;
    }
  }

  /** Watches exactly the directories of the last scan (the root is kept while watched). */
  #syncWatches(dirs: readonly string[]): void {
    if (this.#state !== 'running' || !this.#watchers.has(this.#dir)) return;
    const wanted = new Set(dirs);
    for (const [dir, w] of this.#watchers) {
      if (dir !== this.#dir && !wanted.has(dir)) {
        w.close();
        this.#watchers.delete(dir);
      }
    }
    let added = false;
    for (const dir of dirs) if (!this.#watchers.has(dir)) added = this.#watchDirectory(dir) || added;
    // A file written into a new directory before its watch existed: one more scan finds it.
    if (added) this.#debouncer.trigger();
  }

  #unwatch(): void {
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }

  #scheduleRewatch(): void {
    if (this.#rewatchTimer !== undefined || this.#state !== 'running') return;
    this.#rewatchTimer = setTimeout(() => {
      this.#rewatchTimer = undefined;
      this.#watch();
      if (this.#watchers.has(this.#dir)) this.#debouncer.trigger();
    }, this.#rewatchMs);
    this.#rewatchTimer.unref();
  }

  /** Rescans once `at` (ms since the epoch) has come, unless one is due sooner. */
  #wakeBy(at: number): void {
    if (at >= this.#wakeAt || this.#state !== 'running') return;
    clearTimeout(this.#wakeTimer);
    this.#wakeAt = at;
    this.#wakeTimer = setTimeout(() => {
      this.#wakeAt = Infinity;
      this.#wakeTimer = undefined;
      this.#debouncer.trigger();
    }, Math.max(0, at - this.#now()));
    this.#wakeTimer.unref();
  }

  /**
   * The current read of a listed file, reading it if it changed and has been quiet long
   * enough; undefined when it is new and not settled yet, or gone.
   */
  async #readSettled(path: string, now: number, first: boolean): Promise<FileRead | undefined> {
    const prev = this.#reads.get(path);
    let signature: string;
    let changedAt: number;
    try {
      const st = await stat(path);
      signature = fileSignature(st);
      changedAt = st.ctimeMs;
    } catch (err: unknown) {
      if (errno(err) === 'ENOENT') return undefined;
      const problem = { file: path, object: undefined, field: undefined, message: `cannot read (${describeError(err)})` };
      return { signature: '', bytes: 0, split: undefined, problem, digest: undefined };
    }
    if (prev?.signature === signature) return prev;
    if (!first) {
      const seen = this.#unsettled.get(path);
      const since = seen?.signature === signature ? seen.since : now;
      if (seen?.signature !== signature) this.#unsettled.set(path, { signature, since });
      // Quiet for long enough by the file's own change time, or by our own watch (a clock set back).
      const quietFor = Math.max(now - since, now - changedAt);
      if (quietFor < this.#quietMs) {
        this.#wakeBy(now + this.#quietMs - quietFor);
        return prev;
      }
    }
    this.#unsettled.delete(path);
    const r = await readManifestFile(path, this.#limits);
    if (r.missing) return undefined;
    const digest = r.text === undefined ? undefined : createHash('sha256').update(r.text).digest('base64');
    // The same content again (a touch, a rewrite): keep the parsed objects as they were.
    if (prev !== undefined && digest !== undefined && prev.digest === digest) return { ...prev, signature };
    return { signature, bytes: r.bytes, split: r.split, problem: r.problem, digest };
  }

  async #reload(first = false): Promise<void> {
    let paths: string[];
    const dirs: string[] = [];
    try {
      paths = await listFiles(this.#dir, 0, dirs);
      this.#dirProblem = undefined;
      this.#syncWatches(dirs);
    } catch (err: unknown) {
      // The directory is gone or unreadable: keep every last good object and say so.
      const message = `cannot read the directory (${describeError(err)}); keeping the last good objects`;
      const changed = this.#dirProblem?.message !== message;
      this.#dirProblem = { file: this.#dir, object: undefined, field: undefined, message };
      this.#unwatch();
      this.#scheduleRewatch();
      if (changed || first) this.#emit();
      return;
    }
    const now = this.#now();
    const reads = new Map<string, FileRead>();
    for (const path of paths) {
      const r = await this.#readSettled(path, now, first);
      if (r !== undefined) reads.set(path, r);
    }
    const listed = new Set(paths);
    for (const path of this.#unsettled.keys()) if (!listed.has(path)) this.#unsettled.delete(path);
    this.#reads = reads;

    // What each file would give the mesh now, its totals checked in name order.
    const candidates = new Map<string, Applied>();
    const totals = { bytes: 0, objects: 0 };
    for (const [path, r] of reads) {
      const applied = this.#applied.get(path) ?? NOTHING;
      let problems: readonly ManifestProblem[] = r.problem === undefined ? [] : [r.problem];
      if (r.split !== undefined) {
        if (r.split.problems.length > 0) problems = r.split.problems;
        else {
          totals.bytes += r.bytes;
          totals.objects += r.split.objects.length;
          const over = totalLimitProblem(path, totals, this.#limits);
          if (over !== undefined) problems = [over];
        }
      }
      if (problems.length === 0) {
        candidates.set(path, { objects: r.split?.objects ?? [], problems: [], digest: r.digest });
        continue;
      }
      const kept = applied.objects.length > 0;
      candidates.set(path, { objects: applied.objects, problems: kept ? problems.map((p) => ({ ...p, message: p.message + KEPT })) : problems, digest: applied.digest });
    }
    // Files gone from the listing (deleted) would give nothing; unsettled new ones give nothing yet.
    for (const [path, applied] of this.#applied) {
      if (candidates.has(path)) continue;
      candidates.set(path, listed.has(path) ? applied : NOTHING);
    }

    this.#holdMassRemovals(candidates, now);

    let changed = candidates.size !== this.#applied.size;
    const next = new Map<string, Applied>();
    for (const [path, c] of candidates) {
      const before = this.#applied.get(path);
      const same = before !== undefined && (sameObjects(before.objects, c.objects) || (before.digest !== undefined && before.digest === c.digest))
        && sameProblems(before.problems, c.problems);
      if (!same) changed = true;
      if (c.objects.length > 0 || c.problems.length > 0) next.set(path, same ? before : c);
      else if (before !== undefined) changed = true;
    }
    this.#applied = next;
    if (changed || first) this.#emit();
  }

  /** Keeps the applied objects of files whose change is a mass removal, for the grace period. */
  #holdMassRemovals(candidates: Map<string, Applied>, now: number): void {
    const keys = new Map<string, FileKeys>();
    for (const [path, c] of candidates) {
      const applied = this.#applied.get(path) ?? NOTHING;
      keys.set(path, { applied: applied.objects.map(objectKey), next: c.objects.map(objectKey) });
    }
    const decision = guardRemovals(keys, this.#held, now, this.#guard);
    for (const path of decision.released) {
      const k = keys.get(path) as FileKeys;
      this.#log.warn({ directory: this.#dir, file: path, objects: k.applied.length, now: k.next.length, heldMs: now - (this.#held.get(path) ?? now) }, 'applying a held-back mass removal: its grace period is over');
    }
    for (const [path, since] of decision.held) {
      const c = candidates.get(path) as Applied;
      const applied = this.#applied.get(path) ?? NOTHING;
      candidates.set(path, { objects: applied.objects, problems: c.problems, digest: applied.digest });
      this.#wakeBy(since + this.#guard.graceMs);
      if (this.#held.has(path)) continue;
      const k = keys.get(path) as FileKeys;
      this.#log.warn({
        directory: this.#dir, file: path, objects: k.applied.length, now: k.next.length, removing: decision.removedHeld, of: decision.appliedTotal,
        graceMs: this.#guard.graceMs,
      }, `HOLDING BACK a reload that would remove ${decision.removedHeld} of ${decision.appliedTotal} objects (${path}: ${k.applied.length} -> ${k.next.length}); it applies in ${this.#guard.graceMs} ms unless the file comes back`);
    }
    for (const path of this.#held.keys()) {
      if (!decision.held.has(path) && !decision.released.includes(path)) {
        this.#log.info({ directory: this.#dir, file: path }, 'a held-back mass removal is withdrawn: the file no longer removes those objects');
      }
    }
    this.#held = decision.held;
  }

  #emit(): void {
    if (this.#state !== 'running' || this.#listener === undefined) return;
    const objects = [...this.#applied.values()].flatMap((f) => f.objects);
    const problems = [...(this.#dirProblem === undefined ? [] : [this.#dirProblem]), ...[...this.#applied.values()].flatMap((f) => f.problems)];
    this.#log.info({ directory: this.#dir, files: this.#reads.size, objects: objects.length, problems: problems.length, held: this.#held.size }, 'manifest directory loaded');
    this.#listener(objects, problems);
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#unwatch();
    if (this.#rewatchTimer !== undefined) clearTimeout(this.#rewatchTimer);
    this.#rewatchTimer = undefined;
    clearTimeout(this.#wakeTimer);
    this.#wakeTimer = undefined;
    await this.#debouncer.close();
  }
}

function sameObjects(a: readonly RawObject[], b: readonly RawObject[]): boolean {
  return a === b || (a.length === b.length && a.every((o, i) => o === b[i]));
}

function sameProblems(a: readonly ManifestProblem[], b: readonly ManifestProblem[]): boolean {
  return a.length === b.length && a.every((p, i) => JSON.stringify(p) === JSON.stringify(b[i]));
}
