import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, mkdir, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_QUIET_MS, DirectorySource, type DirectorySourceOptions } from '../../../../src/control/source/directory.ts';
import type { RawObject } from '../../../../src/model/types.ts';
import type { ManifestProblem } from '../../../../src/model/manifests.ts';
import { isWeftError } from '../../../../src/core/errors.ts';
import { SourceErrors } from '../../../../src/control/source/errors.ts';
import { loadMesh } from '../../../../src/model/load.ts';
import { aliasBomb } from '../../model/hostile-yaml.ts';

interface Snap { readonly objects: readonly RawObject[]; readonly problems: readonly ManifestProblem[] }

const ns = (name: string, extra = '') => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n${extra}`;
const names = (s: Snap) => s.objects.map((o) => String((o.body.metadata as { name: string }).name)).sort();

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Starts a source on a fresh temp directory and collects its snapshots. */
async function harness(t: TestContext, setup: (dir: string) => Promise<void> = async () => {}, options: Partial<DirectorySourceOptions> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'weft-dirsource-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await setup(dir);
  const snaps: Snap[] = [];
  const waiters: { pred: (s: Snap) => boolean; resolve: (s: Snap) => void }[] = [];
  // Short quiet and grace periods unless a test is about them.
  const source = new DirectorySource({ directory: dir, debounceMs: 20, rewatchMs: 50, quietMs: 30, removalGuard: { graceMs: 0 }, ...stripUndefined(options) });
  t.after(() => source.close());
  await source.start((objects, problems) => {
    const s = { objects, problems };
    snaps.push(s);
    for (const w of [...waiters]) if (w.pred(s)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(s); }
  });
  /** The next snapshot (delivered after this call) satisfying `pred`; fails after 5 s. */
  const next = (pred: (s: Snap) => boolean, what: string): Promise<Snap> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no snapshot with ${what} within 5 s; last: ${JSON.stringify(snaps.at(-1)?.problems)} ${snaps.at(-1) ? names(snaps.at(-1) as Snap).join(',') : ''}`)), 5000);
    waiters.push({ pred, resolve: (s) => { clearTimeout(timer); resolve(s); } });
  });
  return { dir, source, snaps, next };
}

test('delivers the first snapshot before start resolves, reading nested files and skipping hidden ones', async (t) => {
  const h = await harness(t, async (dir) => {
    await writeFile(join(dir, 'a.yaml'), `${ns('a')}---\n${ns('b')}`);
    await mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'sub', 'c.yml'), ns('c'));
    await writeFile(join(dir, 'd.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'd' } }));
    await writeFile(join(dir, 'notes.txt'), 'not a manifest');
    await mkdir(join(dir, '.git'));
    await writeFile(join(dir, '.git', 'x.yaml'), ns('hidden'));
  });
  assert.equal(h.snaps.length, 1);
  assert.deepEqual(names(h.snaps[0]), ['a', 'b', 'c', 'd']);
  assert.deepEqual(h.snaps[0]?.problems, []);
  assert.equal(h.snaps[0]?.objects.find((o) => o.body.metadata && (o.body.metadata as { name: string }).name === 'b')?.source.doc, 1);
});

test('picks up writes, new files, deletions and files replaced by rename', async (t) => {
  const h = await harness(t, async (dir) => writeFile(join(dir, 'a.yaml'), ns('a')));
  await writeFile(join(h.dir, 'a.yaml'), ns('a2'));
  await h.next((s) => names(s).join() === 'a2', 'a2');
  await writeFile(join(h.dir, 'b.yaml'), ns('b'));
  await h.next((s) => names(s).join() === 'a2,b', 'a2,b');
  // An editor's save: write a temporary file, rename it over the original.
  await writeFile(join(h.dir, '.b.yaml.swp'), ns('b2'));
  await rename(join(h.dir, '.b.yaml.swp'), join(h.dir, 'b.yaml'));
  await h.next((s) => names(s).join() === 'a2,b2', 'a2,b2');
  await unlink(join(h.dir, 'a.yaml'));
  await h.next((s) => names(s).join() === 'b2', 'b2 only');
});

test('every save by rename is seen at once, also in a new subdirectory (Node\'s recursive watch on Linux polls, and loses renamed files)', async (t) => {
  const h = await harness(t, async (dir) => writeFile(join(dir, 'a.yaml'), ns('a')));
  // inotify answers in milliseconds; stat polling (5 s) or a lost watch would not.
  const soon = (p: Promise<Snap>, what: string): Promise<Snap> => Promise.race([
    p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} not seen within 1.5 s`)), 1_500).unref()),
  ]);
  // Synchronous, as another process would: the old recursive watch lost these after the first.
  const save = (file: string, body: string): void => {
    writeFileSync(join(file, '..', '.swp'), body);
    renameSync(join(file, '..', '.swp'), file);
  };
  await new Promise((r) => setTimeout(r, 200)); // past the post-start rescan
  for (let i = 0; i < 5; i++) {
    save(join(h.dir, 'a.yaml'), ns(`v${i}`));
    await soon(h.next((s) => names(s).join() === `v${i}`, `save ${i + 1}`), `save ${i + 1}`);
  }
  await mkdir(join(h.dir, 'sub'));
  await writeFile(join(h.dir, 'sub', 'b.yaml'), ns('b'));
  await soon(h.next((s) => names(s).join() === 'b,v4', 'the new subdirectory'), 'the new subdirectory');
  for (let i = 0; i < 3; i++) {
    save(join(h.dir, 'sub', 'b.yaml'), ns(`b${i}`));
    await soon(h.next((s) => names(s).join() === `b${i},v4`, `save ${i + 1} in the subdirectory`), `save ${i + 1} in the subdirectory`);
  }
});

test('a burst of writes is debounced into few snapshots, and an unchanged rescan emits nothing', async (t) => {
  const h = await harness(t, async (dir) => writeFile(join(dir, 'a.yaml'), ns('a')));
  await new Promise((r) => setTimeout(r, 100)); // let the post-start rescan settle
  const before = h.snaps.length;
  for (let i = 0; i < 20; i++) await writeFile(join(h.dir, 'a.yaml'), ns(`v${i}`));
  await h.next((s) => names(s).join() === 'v19', 'v19');
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(h.snaps.length - before <= 3, `${h.snaps.length - before} snapshots for a burst of 20 writes`);
  const settled = h.snaps.length;
  await writeFile(join(h.dir, 'a.yaml'), ns('v19')); // same content
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(h.snaps.length, settled, 'rewriting the same content is not a change');
});

test('a malformed file keeps its last good objects and reports the problem until it is fixed', async (t) => {
  const h = await harness(t, async (dir) => {
    await writeFile(join(dir, 'a.yaml'), ns('a'));
    await writeFile(join(dir, 'b.yaml'), ns('b'));
  });
  await writeFile(join(h.dir, 'a.yaml'), 'kind: [unclosed\n');
  const bad = await h.next((s) => s.problems.length > 0, 'a problem');
  assert.deepEqual(names(bad), ['a', 'b'], 'a.yaml keeps its last good objects');
  assert.equal(bad.problems[0]?.file, join(h.dir, 'a.yaml'));
  assert.match(bad.problems[0]?.message ?? '', /invalid YAML.*keeping this file's last good objects/);
  await writeFile(join(h.dir, 'a.yaml'), ns('a3'));
  const fixed = await h.next((s) => s.problems.length === 0, 'no problem');
  assert.deepEqual(names(fixed), ['a3', 'b']);
  // A new file that never parsed contributes nothing but its problem.
  await writeFile(join(h.dir, 'c.yaml'), '- just\n- a list\n');
  const c = await h.next((s) => s.problems.length === 1, 'c problem');
  assert.deepEqual(names(c), ['a3', 'b']);
  assert.match(c.problems[0]?.message ?? '', /must be a mapping/);
});

test('a ConfigMap-style volume: files are symlinks through ..data, swapped atomically', async (t) => {
  const h = await harness(t, async (dir) => {
    await mkdir(join(dir, '..v1'));
    await writeFile(join(dir, '..v1', 'mesh.yaml'), ns('one'));
    await symlink('..v1', join(dir, '..data'));
    await symlink(join('..data', 'mesh.yaml'), join(dir, 'mesh.yaml'));
  });
  assert.deepEqual(names(h.snaps[0]), ['one']);
  await mkdir(join(h.dir, '..v2'));
  await writeFile(join(h.dir, '..v2', 'mesh.yaml'), ns('two'));
  await symlink('..v2', join(h.dir, '..data_tmp'));
  await rename(join(h.dir, '..data_tmp'), join(h.dir, '..data'));
  await h.next((s) => names(s).join() === 'two', 'two');
});

test('the directory vanishing keeps the last good objects; it coming back is picked up', async (t) => {
  const h = await harness(t, async (dir) => writeFile(join(dir, 'a.yaml'), ns('a')));
  await rm(h.dir, { recursive: true });
  const gone = await h.next((s) => s.problems.some((p) => /cannot read the directory/.test(p.message)), 'directory problem');
  assert.deepEqual(names(gone), ['a']);
  await mkdir(h.dir);
  await writeFile(join(h.dir, 'z.yaml'), ns('z'));
  const back = await h.next((s) => s.problems.length === 0 && names(s).join() === 'z', 'z after re-creation');
  assert.deepEqual(back.problems, []);
});

test('start refuses a missing directory; close is idempotent and stops snapshots', async (t) => {
  await assert.rejects(new DirectorySource({ directory: '/nonexistent/weft' }).start(() => {}), (e: unknown) => isWeftError(e, SourceErrors.NO_DIRECTORY));
  const h = await harness(t, async (dir) => writeFile(join(dir, 'a.yaml'), ns('a')));
  await assert.rejects(h.source.start(() => {}), (e: unknown) => isWeftError(e, SourceErrors.BAD_STATE));
  await h.source.close();
  await h.source.close();
  const count = h.snaps.length;
  await writeFile(join(h.dir, 'a.yaml'), ns('after-close'));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(h.snaps.length, count);
});

test('passes every kind through as written, Nodes included; the model gives their addresses', async (t) => {
  const node = 'apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nstatus:\n  addresses:\n  - { type: InternalIP, address: 198.18.0.11 }\n';
  const h = await harness(t, async (dir) => writeFile(join(dir, 'nodes.yaml'), `${node}---\n${ns('a')}`));
  const s = h.snaps[0] ?? assert.fail();
  assert.deepEqual(s.objects.map((o) => o.kind), ['Node', 'Namespace']);
  const loaded = loadMesh(s.objects);
  assert.deepEqual(loaded.problems, []);
  assert.equal(loaded.state.nodeAddress('n1'), '198.18.0.11');
});

/** A SourceLogger that keeps what it was told. */
function recordingLog() {
  const lines: { level: string; obj: object; msg: string }[] = [];
  return {
    lines,
    log: { info: (obj: object, msg: string) => void lines.push({ level: 'info', obj, msg }), warn: (obj: object, msg: string) => void lines.push({ level: 'warn', obj, msg }) },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const [what, quietMs, held] of [['the default quiet period: read empty, but held back', DEFAULT_QUIET_MS, true], ['a 500 ms quiet period: never read empty', 500, false]] as const) {
  test(`a file truncated for 300 ms (\`> file\`, then the new content) changes nothing (${what})`, async (t) => {
    const rec = recordingLog();
    const h = await harness(t, async (dir) => {
      await writeFile(join(dir, 'a.yaml'), `${ns('a')}---\n${ns('b')}`);
      await writeFile(join(dir, 'c.yaml'), ns('c'));
    }, { quietMs, removalGuard: {}, log: rec.log });
    await sleep(100);
    const before = h.snaps.length;
    await writeFile(join(h.dir, 'a.yaml'), '');
    await sleep(300);
    await writeFile(join(h.dir, 'a.yaml'), `${ns('a')}---\n${ns('b')}`);
    await sleep(1000);
    assert.equal(h.snaps.length, before, `no snapshot at all: ${h.snaps.slice(before).map((x) => names(x).join() + JSON.stringify(x.problems)).join(' | ')}`);
    assert.equal(rec.lines.some((l) => l.msg.startsWith('HOLDING BACK')), held);
    // And a real edit still goes through, once quiet.
    await writeFile(join(h.dir, 'a.yaml'), `${ns('a')}---\n${ns('b2')}`);
    const edited = await h.next((s) => names(s).join() === 'a,b2,c', 'the edit');
    assert.deepEqual(edited.problems, []);
  });
}

test('a file emptied for longer than the quiet period is held back for the grace period, loudly, then applies', async (t) => {
  const rec = recordingLog();
  const h = await harness(t, async (dir) => {
    await writeFile(join(dir, 'a.yaml'), `${ns('a')}---\n${ns('b')}`);
    await writeFile(join(dir, 'c.yaml'), ns('c'));
  }, { quietMs: 30, removalGuard: { graceMs: 1500 }, log: rec.log });
  await sleep(100);
  const emptied = Date.now();
  await writeFile(join(h.dir, 'a.yaml'), '');
  // Meanwhile another file's edit applies at once, with a.yaml's objects kept.
  await sleep(200);
  await writeFile(join(h.dir, 'c.yaml'), ns('c2'));
  const edit = await h.next((s) => names(s).includes('c2'), 'c2');
  assert.deepEqual(names(edit), ['a', 'b', 'c2']);
  const hold = rec.lines.find((l) => l.msg.startsWith('HOLDING BACK'));
  assert.ok(hold !== undefined && hold.level === 'warn', 'the hold is logged as a warning');
  assert.match(hold.msg, /would remove 2 of 3 objects \(.*a\.yaml: 2 -> 0\); it applies in 1500 ms/);
  const applied = await h.next((s) => names(s).join() === 'c2', 'the removal after the grace period');
  assert.ok(Date.now() - emptied >= 1500, `applied after ${Date.now() - emptied} ms, before the grace period ended`);
  assert.ok(rec.lines.some((l) => l.level === 'warn' && /applying a held-back mass removal/.test(l.msg)));
  assert.deepEqual(applied.problems, []);
});

test('a file deleted and written back within the grace period never leaves the mesh', async (t) => {
  const rec = recordingLog();
  const h = await harness(t, async (dir) => writeFile(join(dir, 'a.yaml'), ns('a')), { quietMs: 30, removalGuard: { graceMs: 800 }, log: rec.log });
  await sleep(100);
  await unlink(join(h.dir, 'a.yaml'));
  await sleep(300);
  assert.ok(rec.lines.some((l) => l.msg.startsWith('HOLDING BACK')));
  await writeFile(join(h.dir, 'a.yaml'), ns('a'));
  await sleep(1200);
  assert.ok(h.snaps.every((s) => names(s).join() === 'a'), `a was removed meanwhile: ${h.snaps.map((s) => names(s).join()).join(' | ')}`);
  assert.ok(rec.lines.some((l) => /withdrawn/.test(l.msg)));
});

test('a reload removing more than half of all objects at once is held; a small removal is not', async (t) => {
  const h = await harness(t, async (dir) => {
    await writeFile(join(dir, 'a.yaml'), [ns('a1'), ns('a2'), ns('a3')].join('---\n'));
    await writeFile(join(dir, 'b.yaml'), [ns('b1'), ns('b2'), ns('b3')].join('---\n'));
  }, { quietMs: 30, removalGuard: { graceMs: 1000 } });
  await sleep(100);
  await writeFile(join(h.dir, 'a.yaml'), ns('a1'));
  await h.next((s) => names(s).join() === 'a1,b1,b2,b3', 'the small removal at once');
  const t0 = Date.now();
  await writeFile(join(h.dir, 'b.yaml'), ns('b1'));
  await h.next((s) => names(s).join() === 'a1,b1', '2 of 4 removed is half, not more: applies');
  assert.ok(Date.now() - t0 < 900);
  await writeFile(join(h.dir, 'a.yaml'), [ns('a1'), ns('x1'), ns('x2'), ns('x3')].join('---\n'));
  await h.next((s) => names(s).length === 5, 'grown again');
  const t1 = Date.now();
  await writeFile(join(h.dir, 'a.yaml'), ns('z'));
  await h.next((s) => names(s).join() === 'b1,z', 'the mass removal after its grace period');
  assert.ok(Date.now() - t1 >= 1000, `4 of 5 removed applied after ${Date.now() - t1} ms`);
});

test('hostile files are refused by name and keep nothing from applying elsewhere: alias bomb, 50 MB, too deep', async (t) => {
  const h = await harness(t, async (dir) => writeFile(join(dir, 'a.yaml'), ns('a')));
  await writeFile(join(h.dir, 'bomb.yaml'), aliasBomb());
  await writeFile(join(h.dir, 'huge.yaml'), Buffer.alloc(50 * 1000 * 1000, '#'));
  await writeFile(join(h.dir, 'deep.yaml'), `a: ${'['.repeat(500)}${']'.repeat(500)}\n`);
  const refused = await h.next((s) => s.problems.length === 3, 'three problems');
  const byFile = new Map(refused.problems.map((p) => [p.file, p]));
  assert.equal(byFile.get(join(h.dir, 'bomb.yaml'))?.code, 'WEFT_MANIFEST_ALIAS_LIMIT');
  assert.equal(byFile.get(join(h.dir, 'huge.yaml'))?.code, 'WEFT_MANIFEST_FILE_TOO_LARGE');
  assert.match(byFile.get(join(h.dir, 'huge.yaml'))?.message ?? '', /refused unread: 47\.7 MiB is over the limit of 4 MiB per manifest file/);
  assert.equal(byFile.get(join(h.dir, 'deep.yaml'))?.code, 'WEFT_MANIFEST_TOO_DEEP');
  assert.deepEqual(names(refused), ['a']);
  // Every later change still applies.
  await writeFile(join(h.dir, 'a.yaml'), ns('a2'));
  await writeFile(join(h.dir, 'b.yaml'), ns('b'));
  const later = await h.next((s) => names(s).join() === 'a2,b', 'later changes');
  assert.equal(later.problems.length, 3);
  await unlink(join(h.dir, 'bomb.yaml'));
  await h.next((s) => s.problems.length === 2, 'the bomb gone');
});

test('limits in total: a file past the total objects is refused until others shrink', async (t) => {
  const h = await harness(t, async (dir) => {
    await writeFile(join(dir, 'a.yaml'), [ns('a1'), ns('a2')].join('---\n'));
  }, { limits: { maxObjectsTotal: 3 } });
  await writeFile(join(h.dir, 'b.yaml'), [ns('b1'), ns('b2')].join('---\n'));
  const over = await h.next((s) => s.problems.length === 1, 'b.yaml over the total');
  assert.equal(over.problems[0]?.code, 'WEFT_MANIFEST_TOTAL_TOO_MANY_OBJECTS');
  assert.equal(over.problems[0]?.file, join(h.dir, 'b.yaml'));
  assert.deepEqual(names(over), ['a1', 'a2']);
  await writeFile(join(h.dir, 'a.yaml'), ns('a1'));
  await h.next((s) => s.problems.length === 0 && names(s).join() === 'a1,b1,b2', 'b.yaml fits now');
});

test('a YAML error names file, line and column, and one mistake is one problem', async (t) => {
  const h = await harness(t, async (dir) => writeFile(join(dir, 'a.yaml'), ns('a')));
  await writeFile(join(h.dir, 'a.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n   bad: x\n  - y\n');
  const bad = await h.next((s) => s.problems.length > 0, 'a problem');
  assert.equal(bad.problems.length, 1);
  assert.deepEqual([bad.problems[0]?.file, bad.problems[0]?.line, bad.problems[0]?.column], [join(h.dir, 'a.yaml'), 4, 9]);
  assert.deepEqual(names(bad), ['a']);
});
