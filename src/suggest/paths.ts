// The path generaliser of `sluice policy suggest` (issue 16): the normalized paths a tool was seen
// using become the few path globs a rule lists. Deterministic (the same paths in any order give the
// same globs) and pure. Two steps, both documented in README.md:
// 1. a segment that looks like an id becomes "*": digits, a UUID, 12+ hex digits, a date, or a
//    token-like run of 20+ letters, digits and "_-+:=~" mixing letters and digits (both cases, or
//    4+ digits). Such segments are also where tokens hide, so this keeps them out of the output;
// 2. a prefix (at least one segment) with FANOUT or more distinct children becomes "/prefix/**".
// Patterns that another pattern of the result already covers are dropped.
import { compilePathGlob } from '../match/path.js';

/** Distinct children under one prefix from which the prefix becomes "/prefix/**". */
export const FANOUT = 5;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HEX = /^[0-9a-f]{12,}$/i;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const TOKEN_CHARS = /^[A-Za-z0-9_\-+:=~]{20,}$/;

/** Whether one path segment (already normalized) looks like an id or a token. */
export function isIdSegment(segment: string): boolean {
  if (/^\d+$/.test(segment) || UUID.test(segment) || DATE.test(segment)) return true;
  if (HEX.test(segment) && /\d/.test(segment)) return true;
  if (!TOKEN_CHARS.test(segment) || !/\d/.test(segment) || !/[A-Za-z]/.test(segment)) return false;
  const mixedCase = /[a-z]/.test(segment) && /[A-Z]/.test(segment);
  return mixedCase || (segment.match(/\d/g)?.length ?? 0) >= 4;
}

interface Node {
  children: Map<string, Node>;
  /** a path ends here */
  end: boolean;
}

/** The globs covering every given path (normalized, no query), sorted. */
export function generalisePaths(paths: Iterable<string>): string[] {
  const root: Node = { children: new Map(), end: false };
  for (const path of paths) {
    let node = root;
    // "/a/b/" keeps its trailing slash as an empty last segment; "/" is the root itself.
    const segments = path === '/' ? [] : path.slice(1).split('/');
    for (const raw of segments) {
      const segment = raw !== '' && isIdSegment(raw) ? '*' : escapeGlob(raw);
      let child = node.children.get(segment);
      if (!child) node.children.set(segment, (child = { children: new Map(), end: false }));
      node = child;
    }
    node.end = true;
  }
  const out: string[] = [];
  walk(root, [], out);
  return dropCovered(out);
}

function walk(node: Node, prefix: string[], out: string[]): void {
  if (prefix.length > 0 && node.children.size >= FANOUT) {
    out.push(`/${prefix.join('/')}/**`);
    return;
  }
  if (node.end) out.push(`/${prefix.join('/')}`);
  for (const key of [...node.children.keys()].sort()) walk(node.children.get(key)!, [...prefix, key], out);
}

/** A literal "*" in a path would read as a wildcard: it is matched by "*" anyway, so it becomes one. */
function escapeGlob(segment: string): string {
  return segment.includes('*') ? '*' : segment;
}

/** Drops a pattern another one matches (read as a path); of two that match each other, the first in order stays. */
function dropCovered(patterns: string[]): string[] {
  const unique = [...new Set(patterns)].sort();
  const globs = unique.map((p) => compilePathGlob(p).regex);
  return unique.filter((p, i) => !globs.some((q, j) => j !== i && q.test(p) && (!globs[i]!.test(unique[j]!) || j < i)));
}
