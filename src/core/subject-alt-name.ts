// Reading a certificate's subjectAltName as Node renders it ("URI:a, DNS:b"), where values
// holding a separator or quote are JSON-quoted. Used by identity (SPIFFE ids of peers) and
// control (node certificates) alike.

export interface SubjectAltNames {
  readonly uris: readonly string[];
  readonly dns: readonly string[];
}

export function parseSubjectAltName(text: string | undefined): SubjectAltNames {
  const uris: string[] = [];
  const dns: string[] = [];
  if (text === undefined) return { uris, dns };
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote, skipping escaped characters.
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      next = j + 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      next = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, next);
    }
    if (type === 'URI') uris.push(value);
    else if (type === 'DNS') dns.push(value);
    i = text.startsWith(', ', next) ? next + 2 : next + 1;
  }
  return { uris, dns };
}
