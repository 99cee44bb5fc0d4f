// Request paths as the policy sees them, and the path globs of rules.
//
// A path rule is only as good as the agreement between sluice and the upstream server about which
// resource a path names, so normalization is deliberately narrow and fails closed:
// - the query is split off and never matched;
// - escapes of unreserved characters (A-Z a-z 0-9 - . _ ~) are decoded (RFC 3986 §6.2.2.2) and
//   every other escape keeps its encoding with upper-case hex (§6.2.2.1);
// - "." and ".." segments are resolved (§5.2.4), ".." never climbs above the root;
// - empty segments ("//") are merged, as nginx and most routers do; otherwise "/a//../b" would be
//   "/a/b" here and "/b" on such a server;
// - an encoded "/" or "\", a raw "\", an encoded NUL, a raw control, space or non-ASCII byte, a
//   fragment, and a dot segment with parameters ("..;x", which Tomcat treats as "..") make the
//   path invalid: servers disagree about them, and guessing would let a path slip past a rule.
// The proxy should forward the normalized path, so the upstream sees what was checked.
// Pure, and shared by the policy checks in src/config/ and the decisions in src/policy/, so it
// belongs to neither.

export type NormalizedPath = { ok: true; path: string; query: string | null } | { ok: false; why: string };

type Escaped = { ok: true; text: string } | { ok: false; why: string };

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const HEX = /^[0-9A-Fa-f]{2}$/;

/** Decodes escapes of unreserved characters, upper-cases the rest, refuses the ambiguous ones. */
function normalizeEscapes(raw: string): Escaped {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    const code = raw.charCodeAt(i);
    if (ch === '%') {
      const hex = raw.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return { ok: false, why: 'it contains a malformed percent-escape' };
      const byte = Number.parseInt(hex, 16);
      if (byte === 0x2f) return { ok: false, why: 'it contains an encoded slash (%2F)' };
      if (byte === 0x5c) return { ok: false, why: 'it contains an encoded backslash (%5C)' };
      if (byte === 0x00) return { ok: false, why: 'it contains an encoded NUL (%00)' };
      const decoded = String.fromCharCode(byte);
      out += UNRESERVED.test(decoded) ? decoded : `%${hex.toUpperCase()}`;
      i += 2;
    } else if (ch === '\\') {
      return { ok: false, why: 'it contains a backslash' };
    } else if (ch === '#') {
      return { ok: false, why: 'it contains a fragment (#)' };
    } else if (code <= 0x20 || code >= 0x7f) {
      return { ok: false, why: 'it contains a space, control or non-ASCII character' };
    } else {
      out += ch;
    }
  }
  return { ok: true, text: out };
}

/** Normalizes an origin-form request target (path and optional query). Never throws. */
export function normalizePath(raw: string): NormalizedPath {
  const queryStart = raw.indexOf('?');
  const rawPath = queryStart === -1 ? raw : raw.slice(0, queryStart);
  const query = queryStart === -1 ? null : raw.slice(queryStart + 1);
  if (rawPath === '') return { ok: true, path: '/', query };
  if (!rawPath.startsWith('/')) return { ok: false, why: 'it does not start with "/"' };
  const escaped = normalizeEscapes(rawPath);
  if (!escaped.ok) return escaped;

  const segments = escaped.text.slice(1).split('/');
  const out: string[] = [];
  let trailingSlash = false;
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1;
    if (/^\.\.?;/.test(segment)) return { ok: false, why: 'it contains a dot segment with parameters (";")' };
    if (segment === '' || segment === '.' || segment === '..') {
      if (segment === '..') out.pop();
      // "/a/b/" , "/a/b/." and "/a/b/c/.." all name the directory "/a/b/".
      if (last) trailingSlash = true;
      continue;
    }
    out.push(segment);
  }
  if (out.length === 0) return { ok: true, path: '/', query };
  return { ok: true, path: `/${out.join('/')}${trailingSlash ? '/' : ''}`, query };
}

export interface PathGlob {
  /** as written in the policy */
  readonly pattern: string;
  readonly regex: RegExp;
}

/**
 * Compiles a path glob: "*" is any run of characters inside one segment (possibly empty),
 * "**" as a whole segment is any number of whole segments including none, so "/repos/**"
 * matches "/repos", "/repos/" and "/repos/a/b" but not "/repository". Everything else is
 * literal and case-sensitive, compared with the normalized path (escapes in the pattern are
 * normalized the same way). Throws with a reason when the pattern cannot be compiled.
 */
export function compilePathGlob(pattern: string): PathGlob {
  if (!pattern.startsWith('/')) throw new Error(`path pattern "${pattern}" must start with "/"`);
  if (pattern.includes('?')) throw new Error(`path pattern "${pattern}" cannot match a query ("?")`);
  const escaped = normalizeEscapes(pattern);
  if (!escaped.ok) throw new Error(`path pattern "${pattern}" is not usable: ${escaped.why}`);
  const segments = escaped.text.slice(1).split('/');
  let source = '^';
  for (const [i, segment] of segments.entries()) {
    if (segment === '.' || segment === '..') {
      throw new Error(`path pattern "${pattern}" contains a "${segment}" segment, which never survives normalization`);
    }
    if (segment === '' && i !== segments.length - 1) {
      throw new Error(`path pattern "${pattern}" contains an empty segment ("//"), which never survives normalization`);
    }
    if (segment === '**') {
      source += '(?:/.*)?';
      continue;
    }
    if (segment.includes('**')) {
      throw new Error(`path pattern "${pattern}": "**" must be a whole segment`);
    }
    source += `/${segment.split('*').map(escapeRegExp).join('[^/]*')}`;
  }
  return { pattern, regex: new RegExp(`${source}$`) };
}

function escapeRegExp(literal: string): string {
  return literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
