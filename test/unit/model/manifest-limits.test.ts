import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import { formatProblem, splitManifestFile, splitManifests } from '../../../src/model/manifests.ts';
import { aliasBomb } from './hostile-yaml.ts';
import { DEFAULT_MANIFEST_LIMITS, ManifestLimitCodes, documentDepth, formatBytes, manifestLimits } from '../../../src/model/manifest-limits.ts';

const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;

const refusals: [string, string, Partial<typeof DEFAULT_MANIFEST_LIMITS>, string, RegExp][] = [
  ['an alias bomb', aliasBomb(), {}, ManifestLimitCodes.ALIAS_LIMIT, /expands YAML aliases past the limit of 100/],
  ['deep nesting', `a: ${'['.repeat(65)}${']'.repeat(65)}\n`, {}, ManifestLimitCodes.TOO_DEEP, /nests more than 64 levels deep/],
  ['nesting past the parser\'s stack', `a: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`, {}, ManifestLimitCodes.TOO_DEEP, /nests deeper than the YAML parser can follow/],
  ['block nesting', Array.from({ length: 80 }, (_, i) => `${' '.repeat(i)}k:`).join('\n'), {}, ManifestLimitCodes.TOO_DEEP, /nests more than 64/],
  ['too many documents', `${ns('a')}---\n${ns('b')}---\n${ns('c')}`, { maxObjectsPerFile: 2 }, ManifestLimitCodes.TOO_MANY_OBJECTS, /3 documents is over the limit of 2 objects per manifest file/],
  ['too many bytes', ns('a'), { maxFileBytes: 16 }, ManifestLimitCodes.FILE_TOO_LARGE, /refused: 51 bytes is over the limit of 16 bytes per manifest file/],
];

for (const [what, text, limits, code, message] of refusals) {
  test(`refuses ${what} as a whole, naming the file and the limit`, () => {
    const r = splitManifestFile({ path: 'hostile.yaml', text }, { limits: manifestLimits(limits) });
    assert.equal(r.refused, true);
    assert.deepEqual(r.objects, []);
    assert.equal(r.problems.length, 1);
    assert.equal(r.problems[0]?.code, code);
    assert.equal(r.problems[0]?.file, 'hostile.yaml');
    assert.match(r.problems[0]?.message ?? '', message);
    assert.match(formatProblem(r.problems[0] ?? assert.fail()), new RegExp(`^hostile\\.yaml: refused.*\\[${code}\\]$`));
  });
}

test('legal anchors and merges within the alias budget, and 64 levels, are accepted', () => {
  const text = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\ndata:\n  base: &base {a: "1", b: "2"}\n  one: [*base, *base]\n  two: *base\n`;
  const r = splitManifestFile({ path: 'ok.yaml', text });
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.objects[0]?.body.data, { base: { a: '1', b: '2' }, one: [{ a: '1', b: '2' }, { a: '1', b: '2' }], two: { a: '1', b: '2' } });
  const deep = splitManifestFile({ path: 'deep.yaml', text: `kind: X\na: ${'['.repeat(63)}${']'.repeat(63)}\n` });
  assert.deepEqual(deep.problems, []);
});

test('one YAML mistake is one problem, with line and column', () => {
  const r = splitManifestFile({ path: 'bad.yaml', text: `${ns('a')}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n   bad: x\n  - y\n` });
  assert.equal(r.refused, false);
  assert.equal(r.objects.length, 1, 'the good document still splits');
  assert.equal(r.problems.length, 1);
  const p = r.problems[0] ?? assert.fail();
  assert.deepEqual([p.line, p.column, p.object, p.code], [9, 9, 'document 2', ManifestLimitCodes.BAD_YAML]);
  assert.equal(formatProblem(p), 'bad.yaml:9:9: document 2: invalid YAML: Nested mappings are not allowed in compact mappings (and 4 more in this document) [WEFT_MANIFEST_BAD_YAML]');
  assert.ok(!formatProblem(p).includes('\n'));
});

test('totals: the file that takes the set past the bytes or objects limit is refused, and the ones after it', () => {
  const limits = manifestLimits({ maxObjectsTotal: 3 });
  const files = [
    { path: 'a.yaml', text: `${ns('a')}---\n${ns('b')}` },
    { path: 'b.yaml', text: `${ns('c')}---\n${ns('d')}` },
    { path: 'c.yaml', text: ns('e') },
  ];
  const r = splitManifests(files, { limits });
  assert.deepEqual(r.objects.map((o) => (o.body.metadata as { name: string }).name), ['a', 'b']);
  assert.deepEqual(r.problems.map((p) => [p.file, p.code]), [['b.yaml', ManifestLimitCodes.TOTAL_TOO_MANY_OBJECTS], ['c.yaml', ManifestLimitCodes.TOTAL_TOO_MANY_OBJECTS]]);
  assert.match(r.problems[0]?.message ?? '', /come to 4 objects, over the limit of 3 in total/);
  const bytes = splitManifests(files, { limits: manifestLimits({ maxTotalBytes: 150 }) });
  assert.deepEqual(bytes.problems.map((p) => [p.file, p.code]), [['b.yaml', ManifestLimitCodes.TOTAL_TOO_LARGE], ['c.yaml', ManifestLimitCodes.TOTAL_TOO_LARGE]]);
});

test('documentDepth walks without recursion and stops early; formatBytes and limit validation', () => {
  const [doc] = parseAllDocuments('a: {b: [1, [2, {c: 3}]]}\n');
  assert.equal(documentDepth(doc ?? assert.fail(), 100), 5);
  assert.equal(documentDepth(doc ?? assert.fail(), 2), 3, 'stops once past the limit');
  const [scalar] = parseAllDocuments('just a string\n');
  assert.equal(documentDepth(scalar ?? assert.fail(), 100), 0);
  assert.deepEqual([formatBytes(12), formatBytes(1536), formatBytes(4 * 1024 * 1024), formatBytes(50 * 1000 * 1000)], ['12 bytes', '1.5 KiB', '4 MiB', '47.7 MiB']);
  assert.throws(() => manifestLimits({ maxDepth: 0 }), /maxDepth must be a positive integer/);
});
