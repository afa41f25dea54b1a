// Hostile manifests for the input-limit tests (unit and simulator).

/** The classic "billion laughs": nine levels of nine aliases each. */
export function aliasBomb(): string {
  let body = '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
  let prev = 'a';
  for (const n of 'bcdefghi') {
    body += `  ${n}: &${n} [${Array(9).fill(`*${prev}`).join(',')}]\n`;
    prev = n;
  }
  return `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n${body}`;
}
