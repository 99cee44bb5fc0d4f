// Public suffixes (ICANN and private sections of the Public Suffix List, as tldts ships it) at or
// under a name. A wildcard "*.T" is as wide as allow-all when T is a public suffix ("*.com",
// "*.github.io"), and also when some public suffix sits under T ("*.amazonaws.com" covers
// "s3.amazonaws.com", under which anyone can create a bucket name). tldts answers "what is the
// suffix of this name" but not "which suffixes lie under it", so the second question walks the
// suffix trie tldts ships; a layout it no longer recognises fails closed (see suffixesUnder).
import { createRequire } from 'node:module';
import type * as Tldts from 'tldts';

// tldts is CommonJS: required, not imported, because Node's import of a CommonJS file first scans
// it for its exports, and tldts's 200 KB (the suffix list inline) made that scan ~60 ms of a start.
const cjs = createRequire(import.meta.url);
const { getPublicSuffix } = cjs('tldts') as typeof Tldts;

/** tldts's flat suffix trie (tldts/src/data/trie.ts): nodes, their edges, and the edge labels back to back. */
interface SuffixTrie {
  nodeFlags: Uint8Array;
  edgeStart: Uint16Array | Uint32Array;
  edgeLength: Uint8Array;
  edgeChild: Uint16Array | Uint32Array;
  labelText: string;
  rulesRoot: number;
}

interface Walkable {
  trie: SuffixTrie;
  /** where each edge's label starts in labelText */
  offsets: Uint32Array;
}

let walkable: Walkable | null | undefined;

function isArrayLike(value: unknown): value is ArrayLike<number> {
  return ArrayBuffer.isView(value) && 'length' in value;
}

/** The trie, or null when the installed tldts no longer ships it in the layout read here. */
function loadTrie(): Walkable | null {
  if (walkable !== undefined) return walkable;
  walkable = null;
  try {
    const required = cjs('tldts/dist/cjs/src/data/trie.js') as Partial<Record<keyof SuffixTrie, unknown>>;
    const { nodeFlags, edgeStart, edgeLength, edgeChild, labelText, rulesRoot } = required;
    if (
      !isArrayLike(nodeFlags) ||
      !isArrayLike(edgeStart) ||
      !isArrayLike(edgeLength) ||
      !isArrayLike(edgeChild) ||
      typeof labelText !== 'string' ||
      typeof rulesRoot !== 'number' ||
      edgeStart.length !== nodeFlags.length + 1 ||
      edgeLength.length !== edgeChild.length
    ) {
      return null;
    }
    const trie = required as SuffixTrie;
    const offsets = new Uint32Array(trie.edgeLength.length);
    let offset = 0;
    for (let edge = 0; edge < offsets.length; edge++) {
      offsets[edge] = offset;
      offset += trie.edgeLength[edge]!;
    }
    if (offset !== labelText.length) return null;
    walkable = { trie, offsets };
  } catch {
    walkable = null;
  }
  return walkable;
}

function labelOf(w: Walkable, edge: number): string {
  return w.trie.labelText.slice(w.offsets[edge], w.offsets[edge]! + w.trie.edgeLength[edge]!);
}

/** The node reached from the root by the labels of `name`, right to left; a "*" edge stands for any label. */
function nodeFor(w: Walkable, name: string): number | null {
  let node = w.trie.rulesRoot;
  for (const label of name.split('.').reverse()) {
    let next: number | null = null;
    let wildcard: number | null = null;
    for (let edge = w.trie.edgeStart[node]!; edge < w.trie.edgeStart[node + 1]!; edge++) {
      const text = labelOf(w, edge);
      if (text === label) next = w.trie.edgeChild[edge]!;
      else if (text === '*') wildcard = w.trie.edgeChild[edge]!;
    }
    const child = next ?? wildcard;
    if (child === null) return null;
    node = child;
  }
  return node;
}

/**
 * The public suffixes strictly under `name` ("s3.amazonaws.com" under "amazonaws.com"), shortest
 * first; a wildcard rule shows as "*.<name>". Throws when the installed tldts's data cannot be read,
 * so a strict policy is refused rather than checked against nothing.
 */
export function suffixesUnder(name: string): string[] {
  const w = loadTrie();
  if (!w) throw new Error('the public suffix data of the installed tldts cannot be read (its layout changed); reinstall the pinned version');
  const start = nodeFor(w, name.toLowerCase());
  if (start === null) return [];
  const found: string[] = [];
  // Breadth first, so the shortest suffixes come first; the trie shares nodes but has no cycles.
  let level: Array<{ node: number; name: string }> = [{ node: start, name }];
  while (level.length > 0) {
    const next: Array<{ node: number; name: string }> = [];
    for (const { node, name: above } of level) {
      for (let edge = w.trie.edgeStart[node]!; edge < w.trie.edgeStart[node + 1]!; edge++) {
        const child = w.trie.edgeChild[edge]!;
        const full = `${labelOf(w, edge)}.${above}`;
        if (w.trie.nodeFlags[child]! !== 0) found.push(full);
        next.push({ node: child, name: full });
      }
    }
    level = next;
  }
  return found;
}

/**
 * "*.com", "*.co.uk", and also private-registry suffixes such as "*.github.io" where anyone can
 * publish a site. A TLD unknown to the list ("*.internal") counts too: tldts treats it as one.
 */
export function isPublicSuffix(name: string): boolean {
  return getPublicSuffix(name, { allowPrivateDomains: true }) === name;
}

/**
 * The public suffix a wildcard over `tail` reaches: `tail` itself when it is one, else (with `under`)
 * the shortest suffix below it; null when the wildcard stays inside names someone owns.
 */
export function publicSuffixReached(tail: string, under: boolean): { suffix: string; more: number } | null {
  if (isPublicSuffix(tail)) return { suffix: tail, more: 0 };
  if (!under) return null;
  const all = suffixesUnder(tail);
  // name a suffix someone can read ("s3.amazonaws.com") before a wildcard rule ("*.compute.amazonaws.com")
  const named = all.find((suffix) => !suffix.startsWith('*.')) ?? all[0];
  return named === undefined ? null : { suffix: named, more: all.length - 1 };
}
