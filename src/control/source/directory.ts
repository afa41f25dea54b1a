// A directory of YAML (or JSON) manifests, watched for changes. Every change rescans the
// directory, so files replaced by rename (editors, `kubectl create configmap` volumes that
// swap a `..data` symlink) are seen like in-place writes. A file that stops parsing keeps
// its last good objects, with its problems reported, until it parses again.
//
// Each directory gets its own non-recursive watch: Node's recursive fs.watch on Linux (a JS
// layer over per-entry watches) stops reporting after a file has been replaced by rename a
// couple of times, so an editor's third save would go unseen.

import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { splitManifests, type ManifestProblem } from '../../model/manifests.ts';
import type { RawObject } from '../../model/types.ts';
import { describeError } from '../../core/errors.ts';
import { silentLogger, type ConfigSource, type SnapshotListener, type SourceLogger } from './contract.ts';
import { Debouncer } from './debounce.ts';
import { sourceError, SourceErrors } from './errors.ts';

export interface DirectorySourceOptions {
  readonly directory: string;
  /** Quiet time after the last change before rescanning (default 50 ms). */
  readonly debounceMs?: number;
  /** How often to try watching again after the directory vanished (default 1000 ms). */
  readonly rewatchMs?: number;
  readonly log?: SourceLogger;
}

const EXTENSIONS = ['.yaml', '.yml', '.json'];
const MAX_DEPTH = 8;

interface FileState {
  readonly text: string | undefined;
  /** The objects of the last version that parsed. */
  readonly objects: readonly RawObject[];
  readonly problems: readonly ManifestProblem[];
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

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
  readonly #debouncer: Debouncer;
  #files = new Map<string, FileState>();
  #dirProblem: ManifestProblem | undefined;
  #listener: SnapshotListener | undefined;
  /** One non-recursive watch per scanned directory; the root's is the first. */
  readonly #watchers = new Map<string, FSWatcher>();
  #rewatchTimer: NodeJS.Timeout | undefined;
  #state: 'new' | 'running' | 'closed' = 'new';

  constructor(options: DirectorySourceOptions) {
    this.#dir = options.directory;
    this.#log = options.log ?? silentLogger;
    this.#rewatchMs = options.rewatchMs ?? 1000;
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
    const next = new Map<string, FileState>();
    for (const path of paths) {
      const prev = this.#files.get(path);
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err: unknown) {
        if (errno(err) === 'ENOENT') continue; // deleted since the listing
        const message = `cannot read (${describeError(err)})${prev !== undefined && prev.objects.length > 0 ? '; keeping its last good objects' : ''}`;
        next.set(path, { text: undefined, objects: prev?.objects ?? [], problems: [{ file: path, object: undefined, field: undefined, message }] });
        continue;
      }
      if (prev !== undefined && prev.text === text) {
        next.set(path, prev);
        continue;
      }
      const split = splitManifests([{ path, text }]);
      if (split.problems.length === 0) {
        next.set(path, { text, objects: split.objects, problems: [] });
      } else {
        const kept = prev !== undefined && prev.objects.length > 0;
        const problems = kept
          ? split.problems.map((p) => ({ ...p, message: `${p.message} (keeping this file's last good objects)` }))
          : split.problems;
        next.set(path, { text, objects: prev?.objects ?? [], problems });
      }
    }
    const changed = next.size !== this.#files.size || [...next].some(([path, st]) => this.#files.get(path) !== st);
    this.#files = next;
    if (changed || first) this.#emit();
  }

  #emit(): void {
    if (this.#state !== 'running' || this.#listener === undefined) return;
    const objects = [...this.#files.values()].flatMap((f) => f.objects);
    const problems = [...(this.#dirProblem === undefined ? [] : [this.#dirProblem]), ...[...this.#files.values()].flatMap((f) => f.problems)];
    this.#log.info({ directory: this.#dir, files: this.#files.size, objects: objects.length, problems: problems.length }, 'manifest directory loaded');
    this.#listener(objects, problems);
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#unwatch();
    if (this.#rewatchTimer !== undefined) clearTimeout(this.#rewatchTimer);
    this.#rewatchTimer = undefined;
    await this.#debouncer.close();
  }
}
