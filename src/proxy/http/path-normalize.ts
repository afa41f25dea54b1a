// The request target a route (and an L7 policy) matches, made canonical first, as Istio's
// default path normalisation (BASE: Envoy's normalize_path) does: otherwise `/admin` could
// be reached as `/public/../admin`, `/%61dmin` or `\admin` past a rule written for
// `/admin`. The path part (never the query) gets RFC 3986 §6.2.2 normalisation:
// percent-encoded unreserved characters decoded, other percent-encodings' hex upper-cased,
// backslashes read as slashes, dot segments removed (§5.2.4). `%2F` stays encoded (it is
// not a separator to the backend either); slashes are not merged (Istio's
// MERGE_SLASHES is an opt-in). A fragment is dropped (it never belongs on the wire). The
// normalised target is also what is sent on, so the backend sees what was matched.
// Anything that cannot be normalised is refused with 400. Pure.

import { normalizePath } from '../../model/l7-authorization.ts';

export type NormalizedTarget =
  | { readonly ok: true; readonly target: string }
  | { readonly ok: false; readonly reason: string };

const HEX = /^[0-9A-Fa-f]{2}$/;
/** A `.` or `..` segment. */
const DOT_SEGMENT = /(^|\/)\.\.?(\/|$)/;

/** Upper-cases the hex of every percent-encoding; undefined when a `%` is not followed by two hex digits. */
function upperPercent(path: string): string | undefined {
  if (!path.includes('%')) return path;
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i] ?? '';
    if (c !== '%') {
      out += c;
      continue;
    }
    const hex = path.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return undefined;
    out += `%${hex.toUpperCase()}`;
    i += 2;
  }
  return out;
}

/**
 * The canonical form of an origin-form request target (`/path?query`). `*` (OPTIONS) is
 * left alone; any other form, control characters or a broken percent-encoding are refused.
 */
export function normalizeRequestTarget(target: string): NormalizedTarget {
  if (target === '*') return { ok: true, target };
  if (!target.startsWith('/') && !target.startsWith('\\')) return { ok: false, reason: `request target ${JSON.stringify(target.slice(0, 64))} is not an absolute path` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(target)) return { ok: false, reason: 'control character in the request target' };
  const hash = target.indexOf('#');
  const noFragment = hash < 0 ? target : target.slice(0, hash);
  const q = noFragment.indexOf('?');
  const rawPath = q < 0 ? noFragment : noFragment.slice(0, q);
  const query = q < 0 ? '' : noFragment.slice(q);
  // Most paths are canonical already (no percent-encoding, backslash or dot segment): as
  // they came, without the rewrite below (per request, measurable at thousands per second).
  if (!rawPath.includes('%') && !rawPath.includes('\\') && !DOT_SEGMENT.test(rawPath)) return { ok: true, target: noFragment };
  const checked = upperPercent(rawPath.replaceAll('\\', '/'));
  if (checked === undefined) return { ok: false, reason: 'broken percent-encoding in the path' };
  // The rest (unreserved %XX decoded, dot segments) is the normalisation policy matching uses.
  return { ok: true, target: normalizePath(checked) + query };
}
